#!/usr/bin/env bash
# Start or stop a local multi-node Ray cluster on 127.0.0.1 (one machine, N extra
# worker nodes) to try multi-node jobs:
#   bash cluster/local.sh start [N_WORKERS=2] [CPUS_PER_NODE=1]
#   bash cluster/local.sh stop
# Jobs: ray job submit --address http://127.0.0.1:8291 --working-dir . -- python pipelines/...
# `stop` ends only this cluster's processes (recorded process groups), not other Rays.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${TMPDIR:-/tmp}/shardforge-local-cluster
GCS_PORT=6391
DASH_PORT=8291
RAY=.venv/bin/ray
export RAY_AUTH_MODE=token
# Bind every Ray process to 127.0.0.1 (Ray otherwise swaps in the routable address).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
case "${1:-}" in
  start)
    n=${2:-2}; cpus=${3:-1}
    mkdir -p "$STATE"
    "$RAY" get-auth-token --generate >/dev/null
    setsid "$RAY" start --head --block --node-ip-address 127.0.0.1 --port "$GCS_PORT" \
      --dashboard-host 127.0.0.1 --dashboard-port "$DASH_PORT" --num-cpus "$cpus" \
      --disable-usage-stats >"$STATE/head.log" 2>&1 &
    echo $! >"$STATE/pgids"
    for _ in $(seq 60); do "$RAY" status --address "127.0.0.1:$GCS_PORT" >/dev/null 2>&1 && break; sleep 1; done
    for i in $(seq "$n"); do
      setsid "$RAY" start --block --address "127.0.0.1:$GCS_PORT" --node-ip-address 127.0.0.1 \
        --num-cpus "$cpus" --disable-usage-stats >"$STATE/worker$i.log" 2>&1 &
      echo $! >>"$STATE/pgids"
    done
    sleep 5
    "$RAY" status --address "127.0.0.1:$GCS_PORT" | sed -n '1,20p'
    echo "dashboard / job address: http://127.0.0.1:$DASH_PORT"
    ;;
  stop)
    [ -f "$STATE/pgids" ] || { echo "no local cluster recorded in $STATE"; exit 0; }
    while read -r pg; do kill -TERM -- "-$pg" 2>/dev/null || true; done <"$STATE/pgids"
    sleep 5
    while read -r pg; do kill -KILL -- "-$pg" 2>/dev/null || true; done <"$STATE/pgids"
    rm -f "$STATE/pgids"
    echo "stopped"
    ;;
  *) echo "usage: $0 start [N_WORKERS] [CPUS_PER_NODE] | stop" >&2; exit 2 ;;
esac
