"""The event model: KIT's events as typed records, the NDJSON contract's decoder, timestamps, session identity, and every name kit-otel emits."""
