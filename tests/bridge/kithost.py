"""Build and run `kithost`, the Go program that plays KIT for the bridge (tests/bridge/gopath).

Three ways to run the same driver (tests/bridge/gopath/src/kithost/driver.go):

- ``cli``: the yaegi command interprets the driver, the kit/ext stand-in and the bridge
  (GOPATH layout: ``kit/ext`` resolves to the stand-in). Needs only ``yaegi``. The stand-in's
  types are interpreted there, and interpreted types have no methods for ``reflect``, so the
  newer event kinds the bridge finds by reflection are not captured in this mode.
- ``host``: a compiled host embeds the yaegi library and exports the compiled stand-in as
  ``kit/ext`` the way KIT does (one interpreter per extension, ``Eval`` of the source, ``Init``
  taken out as ``func(ext.API)``). This is how KIT runs the bridge. Needs ``go`` and the yaegi
  library sources (Debian: golang-github-traefik-yaegi-dev; or KIT_OTEL_YAEGI_GOPATH).
- ``native``: everything compiled by ``go build`` (and checked by ``go vet``). Needs ``go``.

Variants: ``head`` (KIT HEAD API) and ``seed`` (KIT 49f8b485be, without the three newer On*
methods), selected with the ``kitseed`` build tag.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOPATH_SRC = Path(__file__).resolve().parent / "gopath"
EXTENSIONS = Path(__file__).resolve().parent / "extensions"
BRIDGE = ROOT / "src" / "kit_otel" / "bridge" / "kit_otel_bridge.go"

MODES = ("cli", "host", "native")
VARIANTS = ("head", "seed")

# Driver files per loader (the rest of kithost/ is shared).
_COMMON = ["driver.go", "bench.go", "cputime.go"]


def yaegi_gopath() -> str | None:
    """A GOPATH holding github.com/traefik/yaegi (the library, for the host build)."""
    candidates = [os.environ.get("KIT_OTEL_YAEGI_GOPATH", ""), "/usr/share/gocode"]
    for cand in candidates:
        if cand and (Path(cand) / "src/github.com/traefik/yaegi/interp").is_dir():
            return cand
    return None


def unavailable(mode: str) -> str | None:
    """Why `mode` cannot run here, or None."""
    if mode == "cli":
        return None if shutil.which("yaegi") else "the yaegi command is not installed (apt install yaegi)"
    if not shutil.which("go"):
        return "the go toolchain is not installed (apt install golang-go)"
    if mode == "host" and yaegi_gopath() is None:
        return ("the yaegi library sources are not installed "
                "(apt install golang-github-traefik-yaegi-dev, or set KIT_OTEL_YAEGI_GOPATH)")
    return None


def go_env(gopath: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOPATH=gopath, GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0")
    if "GOCACHE" not in env and not os.access(Path.home(), os.W_OK):
        env["GOCACHE"] = str(Path("/tmp") / "kit-otel-gocache")
    return env


def _with_init_renamed(src: Path, name: str) -> str:
    return src.read_text().replace("\nfunc Init(", f"\nfunc {name}(", 1)


@dataclass
class Run:
    """What one kithost run left behind."""

    workdir: Path
    result: dict
    fired: list[dict]
    spool: Path
    stdout: str = ""
    stderr: str = ""
    elapsed: float = 0.0

    def spool_files(self) -> list[Path]:
        if not self.spool.is_dir():
            return []
        # kit-<pid>-<start>-<n>.ndjson: n counts the instances of the process in start order
        return sorted(self.spool.glob("*.ndjson"),
                      key=lambda p: int(p.name.rsplit("-", 1)[-1].split(".")[0]))

    def lines(self, path: Path | None = None) -> list[bytes]:
        files = [path] if path else self.spool_files()
        out: list[bytes] = []
        for f in files:
            out.extend(line for line in f.read_bytes().splitlines(keepends=True) if line.strip())
        return out

    @property
    def handled_fired(self) -> list[dict]:
        return [f for f in self.fired if f["handlers"] > 0]


@dataclass
class KitHost:
    mode: str
    variant: str
    root: Path
    _built: bool = field(default=False, init=False)

    @property
    def gopath(self) -> Path:
        return self.root / "gopath"

    @property
    def pkgdir(self) -> Path:
        return self.gopath / "src" / "kithost"

    @property
    def extdir(self) -> Path:
        return self.root / "extensions"

    @property
    def binary(self) -> Path:
        return self.root / f"kithost-{self.mode}-{self.variant}"

    def _files(self) -> list[str]:
        events = f"events_{self.variant}.go"
        if self.mode == "host":
            return [*_COMMON, events, "load_yaegi.go", f"symbols_{self.variant}.go"]
        return [*_COMMON, events, "load_direct.go", "kit_otel_bridge.go", "ext_empty.go",
                "ext_naive.go"]

    def _tags(self) -> list[str]:
        tags = ["kitseed"] if self.variant == "seed" else []
        if self.mode == "host":
            tags.append("yaegihost")
        return tags

    def prepare(self, bridge: Path = BRIDGE) -> None:
        """Lay out the GOPATH (stand-in, driver, bridge) and build what the mode needs."""
        if self._built:
            return
        reason = unavailable(self.mode)
        if reason:
            raise RuntimeError(reason)
        if self.root.exists():
            shutil.rmtree(self.root)
        shutil.copytree(GOPATH_SRC, self.gopath)
        shutil.copy(bridge, self.pkgdir / "kit_otel_bridge.go")
        (self.pkgdir / "ext_empty.go").write_text(_with_init_renamed(EXTENSIONS / "empty.go", "InitEmpty"))
        (self.pkgdir / "ext_naive.go").write_text(_with_init_renamed(EXTENSIONS / "naive.go", "InitNaive"))
        self.extdir.mkdir(parents=True)
        shutil.copy(bridge, self.extdir / "bridge.go")
        for name in ("empty.go", "naive.go"):
            shutil.copy(EXTENSIONS / name, self.extdir / name)
        if self.mode == "native":
            self._go("build", "-o", str(self.binary))
        elif self.mode == "host":
            self._go("build", "-o", str(self.binary), gopath=f"{self.gopath}:{yaegi_gopath()}")
        self._built = True

    def _go(self, *args: str, gopath: str | None = None) -> subprocess.CompletedProcess:
        cmd = ["go", args[0]]
        if self._tags():
            cmd += ["-tags", ",".join(self._tags())]
        cmd += [*args[1:], *self._files()]
        proc = subprocess.run(cmd, cwd=self.pkgdir, env=go_env(gopath or str(self.gopath)),
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def vet(self) -> subprocess.CompletedProcess:
        """`go vet` of the driver + bridge + stand-in (native file set)."""
        return self._go("vet")

    def command(self) -> tuple[list[str], Path]:
        if self.mode == "cli":
            tags = ",".join(["ignore", "yaegicli", *self._tags()])
            return ["yaegi", "run", "-syscall", "-tags", tags, "./"], self.pkgdir
        return [str(self.binary)], self.root

    def run(self, scenario: str, workdir: Path, env: dict[str, str] | None = None,
            timeout: float = 120, check: bool = True) -> Run:
        self.prepare()
        workdir.mkdir(parents=True, exist_ok=True)
        spool = workdir / "spool"
        full_env = dict(os.environ)
        # A clean KIT_OPT_* environment: only what the test sets.
        for key in [k for k in full_env if k.startswith("KIT_OPT_")]:
            del full_env[key]
        full_env.update({
            "GOPATH": str(self.gopath), "GO111MODULE": "off",
            "HOME": str(workdir / "home"), "XDG_STATE_HOME": str(workdir / "state"),
            "XDG_RUNTIME_DIR": str(workdir / "run"),
            "KITHOST_SCENARIO": scenario, "KITHOST_WORKDIR": str(workdir),
            "KITHOST_EXTDIR": str(self.extdir),
            "KIT_OPT_KIT_OTEL_SPOOL_DIR": str(spool),
            "KIT_OPT_KIT_OTEL_SOCKET": "off",
        })
        full_env.update(env or {})
        cmd, cwd = self.command()
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
        elapsed = time.monotonic() - started
        if check and proc.returncode != 0:
            raise RuntimeError(f"kithost {scenario} ({self.mode}/{self.variant}) failed "
                               f"rc={proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        result_path = workdir / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        expected_path = workdir / "expected.ndjson"
        fired = ([json.loads(line) for line in expected_path.read_text().splitlines() if line]
                 if expected_path.exists() else [])
        return Run(workdir=workdir, result=result, fired=fired, spool=spool, stdout=proc.stdout,
                   stderr=proc.stderr, elapsed=elapsed)
