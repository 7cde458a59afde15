"""Running work on Ray: connection, task fan-out, progress (imported lazily: no Ray here)."""

RAY_ADDRESS_HELP = ("Ray cluster to use (default: the job's cluster under `ray job submit`, "
                    "else a private local Ray on 127.0.0.1)")
