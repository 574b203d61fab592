"""The `kit-otel` console script.

The command line's modules are imported here, inside a guard: importing the OpenTelemetry SDK
already reads some OTEL_* variables and refuses a bad one with a ValueError
(`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=-1`), before any command could catch it. That is one line
naming the variable and exit 2, even for `--help`, never a traceback.
"""

from __future__ import annotations

import sys

EXIT_USAGE = 2  # as kit_otel.cli.main's: a bad argument, setting or environment variable
EXIT_INTERNAL = 70


def main() -> int:
    try:
        from kit_otel.cli.main import main as run
    except ValueError as exc:
        print(f"kit-otel: {exc} (an OTEL_* environment variable the OpenTelemetry SDK reads "
              "when it loads: fix or unset it)", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        print(f"kit-otel: internal error: cannot load the command line: {exc} (the "
              "installation is broken; reinstall kit-otel)", file=sys.stderr)
        return EXIT_INTERNAL
    return run()


if __name__ == "__main__":
    sys.exit(main())
