"""Who a session is: its id and project, from KIT's session file or, failing that, its path.

KIT's CLI sends an empty `SessionStartEvent.SessionID`; the real id is the `id` of line 1 of the
session JSONL (`{"type":"session","version":3,"id":...,"cwd":...}`). Session directories are
named after the working directory with "/" turned into "--" and the leading "--" trimmed.
Files are only opened inside the configured sessions root (input is untrusted).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kit_otel.state.regular_file import open_regular

DEFAULT_SESSIONS_ROOT = Path("~/.kit/sessions")
_HEADER_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class SessionIdentity:
    session_id: str
    cwd: str
    project: str
    from_file: bool  # True when read from the session file's header line


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path` resolves to a place under `root` (no escaping through .. or links)."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def read_session_header(path: Path) -> dict | None:
    try:  # a FIFO or device in its place: no header, and no wait
        with os.fdopen(open_regular(path), "rb") as fh:
            line = fh.readline(_HEADER_MAX_BYTES)
        header = json.loads(line)
    except (OSError, ValueError):
        return None
    if isinstance(header, dict) and header.get("type") == "session":
        return header
    return None


def cwd_from_session_dir(dirname: str) -> str:
    return "/" + dirname.replace("--", "/") if dirname else ""


def project_of(cwd: str) -> str:
    return os.path.basename(cwd.rstrip("/")) or cwd or "unknown"


@lru_cache(maxsize=4096)
def identify_session(session_path: str, sessions_root: str | None) -> SessionIdentity:
    """Session id and project of a session path (cached: a session's header never changes)."""
    path = Path(session_path)
    header = None
    if sessions_root is not None and is_inside(path, Path(sessions_root).expanduser()):
        header = read_session_header(path)
    if header and isinstance(header.get("id"), str) and header["id"]:
        cwd = header.get("cwd") if isinstance(header.get("cwd"), str) else ""
        cwd = cwd or cwd_from_session_dir(path.parent.name)
        return SessionIdentity(header["id"], cwd, project_of(cwd), True)
    cwd = cwd_from_session_dir(path.parent.name)
    return SessionIdentity(path.stem, cwd, project_of(cwd), False)
