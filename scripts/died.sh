#!/usr/bin/env bash
# What scripts/test.sh prints when pytest ended without its summary: the tests it was in,
# the disk and memory left, and the end of the newest Ray session's GCS and raylet logs
# (a Ray driver exits with status 1 when its GCS is gone for 60 s).
trail="$1"; rc="$2"
echo "pytest ended with exit status $rc before its summary. The last tests started:"
tail -n 3 "$trail" | sed 's/^/  /'
echo "Disk and memory now:"
df -h /tmp . 2>&1 | sed 's/^/  /'
free -m 2>&1 | sed 's/^/  /'
logs=/tmp/ray/session_latest/logs
for f in gcs_server.out gcs_server.err raylet.out raylet.err; do
    if [ -s "$logs/$f" ]; then
        echo "End of $logs/$f:"
        tail -n 15 "$logs/$f" | sed 's/^/  /'
    fi
done
