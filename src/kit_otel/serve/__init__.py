"""`kit-otel serve`: the daemon that tails the spool directory, and its checkpoints."""
