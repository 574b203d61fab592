"""Repository, branch and commit of a session's working directory, read from `.git` as files.

No `git` subprocess (it may be missing, slow, or configured to run hooks and fsmonitors) and
every read is bounded: at most `_MAX_LEVELS` parent directories are tried, small files are read
up to `_SMALL_FILE` bytes and `packed-refs` up to `_PACKED_REFS` bytes. Works in linked
worktrees (`.git` is a file naming the worktree's git dir, whose `commondir` holds the shared
refs and config), submodules, detached HEADs and packed refs. The directory comes from KIT's
session header — untrusted input — so nothing but these few git files is ever opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kit_otel.model import names as n

_MAX_LEVELS = 64
_SMALL_FILE = 64 * 1024
_PACKED_REFS = 8 * 1024 * 1024
_OBJECT_ID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256
_REMOTE = re.compile(r'^\s*\[\s*remote\s+"([^"]*)"\s*\]\s*$')
_SECTION = re.compile(r"^\s*\[")
_URL = re.compile(r"^\s*url\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class Checkout:
    repository: str  # the remote's repository name, else the work tree's directory name
    url: str  # the remote `origin` (else the first remote), credentials removed; "" if none
    branch: str  # "" when HEAD is detached
    commit: str  # "" on a branch without commits yet

    def span_attributes(self) -> dict[str, str]:
        """OpenTelemetry VCS attributes (semantic conventions) for a turn span."""
        attrs = {n.VCS_REPOSITORY_NAME: self.repository}
        if self.url:
            attrs[n.VCS_REPOSITORY_URL_FULL] = self.url
        if self.branch:
            attrs[n.VCS_REF_HEAD_NAME] = self.branch
            attrs[n.VCS_REF_HEAD_TYPE] = "branch"
        if self.commit:
            attrs[n.VCS_REF_HEAD_REVISION] = self.commit
        return attrs


def _read_small(path: Path, limit: int = _SMALL_FILE) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def find_git_dirs(start: Path) -> tuple[Path, Path, Path] | None:
    """(work tree, git dir, common dir) of the checkout containing `start`, or None."""
    directory = start
    for _ in range(_MAX_LEVELS):
        dot_git = directory / ".git"
        try:
            if dot_git.is_dir():
                return directory, dot_git, _common_dir(dot_git)
            if dot_git.is_file():
                text = _read_small(dot_git, 4096) or ""
                if text.startswith("gitdir:"):
                    git_dir = Path(text[len("gitdir:"):].strip())
                    if not git_dir.is_absolute():
                        git_dir = directory / git_dir
                    if git_dir.is_dir():
                        return directory, git_dir, _common_dir(git_dir)
                return None  # a broken .git file: not a checkout we can read
        except OSError:
            return None
        if directory.parent == directory:
            return None
        directory = directory.parent
    return None


def _common_dir(git_dir: Path) -> Path:
    text = _read_small(git_dir / "commondir", 4096)
    if not text or not text.strip():
        return git_dir
    common = Path(text.strip())
    return common if common.is_absolute() else git_dir / common


def _resolve_ref(git_dir: Path, common_dir: Path, ref: str) -> str:
    if ".." in ref.split("/"):
        return ""  # HEAD is input too: never leave the git directories
    for base in (git_dir, common_dir):
        text = _read_small(base / ref, 4096)
        if text is not None:
            value = text.strip()
            if value.startswith("ref:"):  # a symbolic ref: one more step, no loops
                target = value[4:].strip()
                value = "" if ".." in target.split("/") else \
                    (_read_small(common_dir / target, 4096) or "").strip()
            return value if _OBJECT_ID.match(value) else ""
    return _packed_ref(common_dir / "packed-refs", ref)


def _packed_ref(path: Path, ref: str) -> str:
    try:
        with open(path, "rb") as fh:
            read = 0
            for raw in fh:
                read += len(raw)
                if read > _PACKED_REFS:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.endswith(" " + ref):
                    value = line.split(" ", 1)[0]
                    return value if _OBJECT_ID.match(value) else ""
    except OSError:
        pass
    return ""


def _remote_url(common_dir: Path) -> str:
    text = _read_small(common_dir / "config") or ""
    urls: dict[str, str] = {}
    remote = None
    for line in text.splitlines():
        match = _REMOTE.match(line)
        if match:
            remote = match.group(1)
            continue
        if _SECTION.match(line):
            remote = None
            continue
        url = _URL.match(line) if remote is not None else None
        if url and remote not in urls:
            urls[remote] = url.group(1).strip('"')
    url = urls.get("origin") or next(iter(urls.values()), "")
    return _without_credentials(url)


def _without_credentials(url: str) -> str:
    """`https://user:token@host/x.git` → `https://host/x.git`; scp-like `git@host:x` stays."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _repository_name(url: str, work_tree: Path, common_dir: Path) -> str:
    if url:
        tail = re.split(r"[/:]", url.rstrip("/"))[-1]
        tail = tail[:-4] if tail.endswith(".git") else tail
        if tail:
            return tail
    # a linked worktree's name is not the repository's: name the main checkout instead
    main = common_dir.parent if common_dir.name == ".git" else work_tree
    return main.name or work_tree.name


@lru_cache(maxsize=1024)
def _git_dirs_of(cwd: str) -> tuple[Path, Path, Path] | None:
    """Where a working directory's checkout lives does not change under a running session;
    what HEAD points at does, and is read at every turn."""
    return find_git_dirs(Path(cwd))


def read_checkout(cwd: str) -> Checkout | None:
    """The checkout of `cwd`, or None when it is not inside a readable git work tree."""
    if not cwd:
        return None
    found = _git_dirs_of(cwd)
    if found is None:
        return None
    work_tree, git_dir, common_dir = found
    head = (_read_small(git_dir / "HEAD", 4096) or "").strip()
    if head.startswith("ref:"):
        ref = head[4:].strip()
        branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref
        commit = _resolve_ref(git_dir, common_dir, ref)
    elif _OBJECT_ID.match(head):
        branch, commit = "", head
    else:
        return None
    url = _remote_url(common_dir)
    return Checkout(_repository_name(url, work_tree, common_dir), url, branch, commit)
