"""What `kit-otel serve` can be tuned by (its intervals and limits, not user settings:
those are `config.Settings`), and the error that stops it from starting."""

from __future__ import annotations

from dataclasses import dataclass

NEVER_NS = 1 << 62  # "now" far enough in the future to close every open turn


@dataclass
class ServeOptions:
    poll_interval_s: float = 0.1  # how often files are checked for new lines
    scan_interval_s: float = 1.0  # how often the spool directory is listed for new files
    # With inotify, a poll looks only at the files it named; every file is still checked this
    # often, for writes inotify does not see (another machine's, on a network filesystem).
    watched_refresh_interval_s: float = 2.0
    watch_spool: bool = True  # False: check every file at every poll (as without inotify)
    gap_wait_s: float = 5.0  # how long a missing seq is waited for before it is skipped
    housekeeping_interval_s: float = 1.0  # lag gauge
    sweep_interval_s: float = 10.0  # idle turns closed by wall clock, spool retention
    shutdown_timeout_s: float = 15.0  # SIGTERM: how long queued spans may take to export
    max_queue_spans: int = 16384  # spans waiting for export before input is paused
    max_batch_spans: int = 512  # spans per export request
    # how long a batch smaller than that may wait for more spans (one turn is a unit of a few
    # spans: without it, 1,000 processes caught up meant ~1,000 requests)
    export_linger_s: float = 0.2
    lines_per_round: int = 2000  # lines one stream may take before the others get a turn
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_connections: int = 256
    bad_lines_before_disconnect: int = 100
    # one socket client (a bridge instance speaks for 1 process, a Python source for a few)
    max_pids_per_connection: int = 16
    max_sessions_per_connection: int = 1024
    max_lines_per_connection_s: int = 20000  # beyond: not read until the next second
    max_socket_streams: int = 1024  # processes known only from sockets, all clients together


class ServeError(RuntimeError):
    """A problem that prevents the daemon from starting (clear message, exit status 2)."""


def use_daemon_output_dir(settings) -> None:
    """A daemon has no meaningful working directory: unless a setting names one, its OTLP-JSON
    files go with its state (`<state_dir>/otlp-json`). `doctor` checks the same place."""
    if settings.sources.get("output_dir", "default") == "default":
        from pathlib import Path
        settings.output_dir = str(Path(settings.state_dir).expanduser() / "otlp-json")
