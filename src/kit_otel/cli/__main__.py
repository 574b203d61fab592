"""`python -m kit_otel.cli`: the `kit-otel` command, for environments without its script."""

import sys

from kit_otel.cli.entry import main

sys.exit(main())
