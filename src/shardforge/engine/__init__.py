"""Layer: engine (beside sources). Running work on Ray: connection, task fan-out, per-shard
manifests, progress, kill points for crash tests (imported lazily: no Ray here).

May import only the foundation (storage, names)."""

RAY_ADDRESS_HELP = ("Ray cluster to use (default: the job's cluster under `ray job submit`, "
                    "else a private local Ray on 127.0.0.1)")
