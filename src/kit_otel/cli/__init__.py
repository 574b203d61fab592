"""The `kit-otel` command line and what only it uses: the summary, bridge installation, the demo generator, doctor."""
