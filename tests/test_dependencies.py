"""The pins CI installs, the bounds pyproject promises, and the test script that ties them."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"constraints.txt: not an exact pin: {line!r}"
        pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def _requirements() -> list[Requirement]:
    # every extra, not only `test`: what CI installs (test, bench) and what users install
    # (grpc, acp) must be the versions the suite ran against
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_requirement_is_pinned_to_a_version_its_bound_allows():
    pins = _pins()
    assert "kit-otel" not in pins
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is required but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}: pinned {pins[name]} is outside pyproject's {req.specifier}")


def test_lower_bounds_are_the_tested_releases():
    # a lower bound older than the pinned minor promises releases nobody ran the suite against
    pins = _pins()
    for req in _requirements():
        lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert lows, f"{req.name} has no lower bound"
        pinned = pins[canonicalize_name(req.name)]
        bound = lows[0].release
        assert pinned.release[:len(bound)] == bound, (
            f"{req.name}: lower bound {lows[0]} is not the tested release line of {pinned}")


def test_ci_runs_the_readme_command_with_every_tool_required():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "KIT_OTEL_REQUIRE_TOOLS=1 bash scripts/test.sh" in ci
    commands = [line for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert not any("--latest" in line for line in commands)  # a separate job, see decisions
    assert "bash scripts/test.sh" in (ROOT / "README.md").read_text()
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "-c constraints.txt" in script


def test_the_test_script_installs_the_extras_ci_and_the_benchmarks_use():
    script = (ROOT / "scripts" / "test.sh").read_text()
    installs = re.findall(r"pip\" install .*-e '\.\[([a-z,]+)\]'", script)
    assert len(installs) == 2  # pinned and --latest
    assert all(set(extras.split(",")) == {"test", "bench"} for extras in installs), installs


def test_the_installed_packages_agree_with_each_others_requirements():
    # the pins (or --latest's picks) must be installable together: pip's own consistency check
    run = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_freeze_without_latest_is_refused_before_installing_anything():
    run = subprocess.run(["bash", str(ROOT / "scripts" / "test.sh"), "--freeze"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "--latest --freeze" in run.stderr
