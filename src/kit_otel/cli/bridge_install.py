"""`kit-otel bridge install|uninstall|status|path`: put the bridge where KIT loads extensions.

KIT loads every `*.go` file of `$XDG_CONFIG_HOME/kit/extensions` (default
`~/.config/kit/extensions`) and of `.kit/extensions/` in the directory it runs in, plus files
given with `kit -e FILE`. `install` copies the shipped bridge into one of those directories and
records the hash of what it wrote next to it (`kit_otel_bridge.go.sha256`, not a `.go` file, so
KIT ignores it). That hash tells a file kit-otel wrote (safe to update or remove) from one
somebody edited (left alone unless `--force`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from kit_otel.bridge import (BRIDGE_FILENAME, BRIDGE_PATH, BUDGET_PATH, OPTIONS, bridge_source,
                             option_env_name)

HASH_SUFFIX = ".sha256"

# Install states.
MISSING = "missing"  # no bridge file there
CURRENT = "current"  # identical to the shipped bridge
OUTDATED = "outdated"  # written by an older kit-otel, unmodified since: safe to update
MODIFIED = "modified"  # differs from what kit-otel wrote (or not written by kit-otel)


class BridgeCLIError(Exception):
    """A refusal or failure with a message for the user."""


@dataclass
class Location:
    scope: str  # "global" or "project"
    directory: Path
    state: str
    sha256: str = ""

    @property
    def file(self) -> Path:
        return self.directory / BRIDGE_FILENAME

    def as_dict(self) -> dict:
        d = asdict(self)
        d["directory"] = str(self.directory)
        d["file"] = str(self.file)
        return d


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def global_extensions_dir(env: dict[str, str] | None = None) -> Path:
    """KIT's global extensions directory: $XDG_CONFIG_HOME/kit/extensions, else
    ~/.config/kit/extensions."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or ""
    if not base:
        home = env.get("HOME") or str(Path.home())
        base = str(Path(home) / ".config")
    return Path(base) / "kit" / "extensions"


def project_extensions_dir(cwd: Path | None = None) -> Path:
    """The project-local extensions directory KIT reads: .kit/extensions of its working dir."""
    return (cwd or Path.cwd()) / ".kit" / "extensions"


def extensions_dir(project: bool = False, cwd: Path | None = None,
                   env: dict[str, str] | None = None) -> Path:
    return project_extensions_dir(cwd) if project else global_extensions_dir(env)


def inspect(directory: Path, scope: str) -> Location:
    """The install state of the bridge in `directory`."""
    target = directory / BRIDGE_FILENAME
    if not target.is_file():
        return Location(scope, directory, MISSING)
    current = _sha256(target.read_bytes())
    if current == _sha256(bridge_source()):
        return Location(scope, directory, CURRENT, current)
    recorded = _read_recorded(target)
    state = OUTDATED if recorded and recorded == current else MODIFIED
    return Location(scope, directory, state, current)


def _hash_file(target: Path) -> Path:
    return target.with_name(target.name + HASH_SUFFIX)


def _read_recorded(target: Path) -> str:
    try:
        return _hash_file(target).read_text().split()[0].strip()
    except (OSError, IndexError):
        return ""


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def install(project: bool = False, force: bool = False, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> tuple[Location, str]:
    """Copy the shipped bridge into KIT's extensions directory. Returns the location and what
    was done: "installed", "updated", "replaced" (a modified file, with force) or "unchanged".
    Raises BridgeCLIError for a modified file without force."""
    scope = "project" if project else "global"
    loc = inspect(extensions_dir(project, cwd, env), scope)
    if loc.state == MODIFIED and not force:
        raise BridgeCLIError(
            f"{loc.file} differs from the bridge kit-otel installs (edited by hand, or not "
            f"written by kit-otel): not overwritten. Use --force to replace it.")
    source = bridge_source()
    action = {MISSING: "installed", CURRENT: "unchanged", OUTDATED: "updated",
              MODIFIED: "replaced"}[loc.state]
    if loc.state != CURRENT:
        _write_atomic(loc.file, source)
    digest = _sha256(source)
    _write_atomic(_hash_file(loc.file), f"{digest}  {BRIDGE_FILENAME}\n".encode())
    return inspect(loc.directory, scope), action


def uninstall(project: bool = False, force: bool = False, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> tuple[Location, str]:
    """Remove the bridge. Returns the location (as it was) and "removed" or "absent". Raises
    BridgeCLIError for a modified file without force."""
    scope = "project" if project else "global"
    loc = inspect(extensions_dir(project, cwd, env), scope)
    if loc.state == MISSING:
        _hash_file(loc.file).unlink(missing_ok=True)
        return loc, "absent"
    if loc.state == MODIFIED and not force:
        raise BridgeCLIError(
            f"{loc.file} differs from the bridge kit-otel installs: not removed. "
            f"Use --force to remove it anyway.")
    loc.file.unlink()
    _hash_file(loc.file).unlink(missing_ok=True)
    return loc, "removed"


def status(cwd: Path | None = None, env: dict[str, str] | None = None) -> dict:
    """Where the bridge is installed, how it compares with the shipped one, and where it
    writes."""
    env = dict(os.environ) if env is None else env
    locations = [inspect(global_extensions_dir(env), "global"),
                 inspect(project_extensions_dir(cwd), "project")]
    installed = [loc for loc in locations if loc.state != MISSING]
    spool = spool_dir(env)
    spool_files = sorted(spool.glob("kit-*.ndjson")) if spool.is_dir() else []
    warnings = []
    if len(installed) > 1:
        warnings.append("installed both globally and in this project: KIT would load it twice "
                        "and write every event twice; uninstall one of them")
    return {
        "shipped": {"file": str(BRIDGE_PATH), "sha256": _sha256(bridge_source())},
        "locations": [loc.as_dict() for loc in locations],
        "spool_dir": str(spool),
        "spool_files": len(spool_files),
        "last_bridge": last_bridge_start(spool_files),
        "options": {name: env.get(option_env_name(name), "") for name in OPTIONS},
        "warnings": warnings,
    }


def last_bridge_start(spool_files: list[Path]) -> dict | None:
    """What the newest bridge instance resolved (its bridge_start header): a bridge inside KIT
    may see another environment than this shell - KIT 49f8b485 gives it none at all."""
    for path in sorted(spool_files, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            with open(path, "rb") as fh:
                header = json.loads(fh.readline(1 << 16))
            options = header["data"]["Options"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return {"file": str(path), "agent": header.get("agent", ""), "options": options}
    return None


def spool_dir(env: dict[str, str] | None = None) -> Path:
    """The spool directory the bridge uses given this environment (KIT_OPT_KIT_OTEL_SPOOL_DIR,
    else $XDG_STATE_HOME/kit-otel/spool, else ~/.local/state/kit-otel/spool). Options set in
    .kit.yml are not visible here."""
    env = os.environ if env is None else env
    explicit = (env.get(option_env_name("kit-otel-spool-dir")) or "").strip()
    if explicit:
        return Path(explicit)
    state = env.get("XDG_STATE_HOME") or ""
    if not state:
        state = str(Path(env.get("HOME") or str(Path.home())) / ".local" / "state")
    return Path(state) / "kit-otel" / "spool"


# ---------------------------------------------------------------------------
# argparse
# ---------------------------------------------------------------------------

def _cmd_install(args) -> int:
    try:
        loc, action = install(project=args.project, force=args.force)
    except (BridgeCLIError, OSError) as exc:
        print(f"kit-otel bridge install: {exc}", file=sys.stderr)
        return 1
    messages = {"installed": "installed", "updated": "updated", "replaced": "replaced",
                "unchanged": "already up to date:"}
    print(f"{messages[action]} {loc.file}")
    if action != "unchanged":
        # A running KIT does not pick a new extension up safely: a hot install grows its
        # extension list past what its Runner was built for (docs/bridge.md, "Installing").
        print("restart running KIT sessions to load it (new sessions load it by themselves)")
    other = inspect(extensions_dir(not args.project), "project" if not args.project else "global")
    if other.state != MISSING:
        print(f"warning: also installed at {other.file}; KIT would load the bridge twice",
              file=sys.stderr)
    return 0


def _cmd_uninstall(args) -> int:
    try:
        loc, action = uninstall(project=args.project, force=args.force)
    except (BridgeCLIError, OSError) as exc:
        print(f"kit-otel bridge uninstall: {exc}", file=sys.stderr)
        return 1
    print(f"removed {loc.file}" if action == "removed" else f"not installed at {loc.file}")
    return 0


def _cmd_path(args) -> int:
    print(BUDGET_PATH if args.budget else BRIDGE_PATH)
    return 0


def _cmd_status(args) -> int:
    info = status()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"shipped bridge: {info['shipped']['file']}")
    for loc in info["locations"]:
        print(f"  {loc['scope']:<8} {loc['state']:<9} {loc['file']}")
    print(f"spool dir: {info['spool_dir']} ({info['spool_files']} files)")
    last = info["last_bridge"]
    if last:
        opts = last["options"]
        print(f"last bridge start: {last['file']}")
        print(f"  it resolved: spool dir {opts.get('kit-otel-spool-dir', '?')}, "
              f"socket {opts.get('kit-otel-socket', '?')}, "
              f"environment from {opts.get('environment', 'process (older bridge)')}")
    set_options = {k: v for k, v in info["options"].items() if v}
    for name, value in set_options.items():
        print(f"  {option_env_name(name)}={value}")
    for warning in info["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `bridge` with its subcommands to the kit-otel command line."""
    bridge = subparsers.add_parser(
        "bridge", help="install the KIT extension that sends KIT's events to kit-otel",
        description="The bridge is a KIT extension (Go, interpreted by KIT) that writes every "
        "KIT lifecycle event to a spool file that kit-otel reads.\n\nexamples:\n"
        "  kit-otel bridge install            # for every KIT session of this user\n"
        "  kit-otel bridge install --project  # only in this project (.kit/extensions)\n"
        "  kit -e \"$(kit-otel bridge path)\"   # once, without installing",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = bridge.add_subparsers(dest="bridge_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("install", help="copy the bridge into KIT's extensions directory",
                       description="Copy the bridge into $XDG_CONFIG_HOME/kit/extensions "
                       "(default ~/.config/kit/extensions), or into .kit/extensions of the "
                       "current directory with --project. A file edited since kit-otel wrote "
                       "it is not overwritten without --force.")
    p.add_argument("--project", action="store_true",
                   help="install into ./.kit/extensions instead of the global directory")
    p.add_argument("--force", action="store_true", help="replace a modified bridge file")
    p.set_defaults(func=_cmd_install)

    p = sub.add_parser("uninstall", help="remove the installed bridge",
                       description="Remove the bridge from the global extensions directory, or "
                       "from ./.kit/extensions with --project. A modified file is kept "
                       "unless --force.")
    p.add_argument("--project", action="store_true")
    p.add_argument("--force", action="store_true", help="remove even a modified bridge file")
    p.set_defaults(func=_cmd_uninstall)

    p = sub.add_parser("path", help="print where the shipped bridge file is (for kit -e)")
    p.add_argument("--budget", action="store_true",
                   help="the budget extension instead: spend against budgets inside KIT")
    p.set_defaults(func=_cmd_path)

    p = sub.add_parser("status", help="show where the bridge is installed and where it writes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_status)
    return bridge


__all__ = ["BridgeCLIError", "Location", "MISSING", "CURRENT", "OUTDATED", "MODIFIED",
           "add_parser", "extensions_dir", "global_extensions_dir", "inspect", "install",
           "project_extensions_dir", "spool_dir", "status", "uninstall"]
