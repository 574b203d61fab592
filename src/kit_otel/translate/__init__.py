"""Events to telemetry: the per-session state machine, what each span, metric and log record carries, and the content, ext-state and pricing policies."""
