#!/usr/bin/env bash
# Set up everything, start a local Ray head on 127.0.0.1 (reused when already up),
# submit the demo pipeline with `ray job submit` (build the demo dataset, train a small
# model on it, print its validation accuracy), and print where the outputs are.
# DATA_DIR (first argument, default ./data, git-ignored) is the catalog home: sources,
# datasets, the catalog database and training runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_DIR=$(realpath -m "${1:-data}")
mkdir -p "$DATA_DIR"
# shellcheck disable=SC1091
source .venv/bin/activate
# Token authentication on (Ray's own mechanism): the token lives in ~/.ray/auth_token
# and both `ray start` and `ray job submit` read it from there.
export RAY_AUTH_MODE=token
# Bind every Ray process to 127.0.0.1 (Ray otherwise swaps in the routable address).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
ray get-auth-token --generate >/dev/null
GCS_PORT=6390
DASH_PORT=8290
if ! ray status --address "127.0.0.1:$GCS_PORT" >/dev/null 2>&1; then
  echo "[demo] starting a local Ray head on 127.0.0.1:$GCS_PORT (stop it with: .venv/bin/ray stop)"
  ray start --head --node-ip-address 127.0.0.1 --port "$GCS_PORT" \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASH_PORT" --disable-usage-stats >/dev/null
fi
# The working dir upload skips what .gitignore lists (.venv, data/).
ray job submit --address "http://127.0.0.1:$DASH_PORT" --working-dir . \
  -- python pipelines/demo.py --root "$DATA_DIR"
echo
echo "[demo] outputs (catalog home $DATA_DIR):"
shardforge catalog show demo --home "$DATA_DIR"
echo "  demo source images:  $DATA_DIR/sources/demo/KEY/{train,val}/CLASS/*.JPEG"
echo "  training runs:       $DATA_DIR/runs/ (demo_cpu-demo and one per variant: checkpoints, metrics.jsonl)"
echo "  variants:            shardforge catalog list --home $DATA_DIR"
