"""What kit-otel reads and writes on disk, safely: atomic replacement, regular files only, KIT's ext-state sidecar format."""
