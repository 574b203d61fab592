"""The repository stands alone: code and docs cite docs/design.md (by an anchor that exists),
never a design file outside the repository; only tests' tool finding may look beside it."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# "DESIGN.md §5", "DESIGN §5", "shared/spec/DESIGN.md", or a bare "(§3)": a design that lives
# elsewhere (our own docs are cited by file and anchor, never by section number)
OUTSIDE_DESIGN = re.compile(r"DESIGN\.md|DESIGN §|§\s*\d")
# the directory beside the repository that CI fills with tools and KIT's runtime
BESIDE = re.compile(r"(?:\.\./|/work/)shared\b|[\"']shared[\"']\s*/")
# what tests may look for there: the real tools they run (a Collector, KIT's runtime)
TOOL_FINDING = re.compile(r"(?:\.\./|/work/)shared/(?:tools|kit)\b"
                          r"|[\"']shared[\"']\s*/\s*[\"'](?:tools|kit)[\"']")
# the test suite and the script that runs it (it installs the tools the tests use)
TEST_TOOLING = ("tests/", "scripts/test.sh")
DESIGN_LINK = re.compile(r"design\.md#([a-z0-9-]+)")


def tracked_text_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = []
    for name in listed:
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        files.append(name)
    return files


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def design_anchors() -> set[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    return {github_anchor(line.lstrip("#")) for line in text.splitlines()
            if re.match(r"#{1,6} ", line)}


def test_the_anchor_rule_matches_github():
    assert github_anchor(" KIT behaviours the translator absorbs") == \
        "kit-behaviours-the-translator-absorbs"
    assert github_anchor("Exporters and configuration") == "exporters-and-configuration"


def test_the_patterns_catch_what_they_are_for():
    assert OUTSIDE_DESIGN.search("the names of DESIGN.md §5")
    assert OUTSIDE_DESIGN.search("(DESIGN §3 order)")
    assert OUTSIDE_DESIGN.search("in its event envelopes (§3), ordered")
    assert not OUTSIDE_DESIGN.search("docs/design.md#metrics")
    assert BESIDE.search("see ../shared/spec/x") and not TOOL_FINDING.search("../shared/spec/x")
    assert BESIDE.search('ROOT.parent / "shared" / "spec"')
    assert TOOL_FINDING.search('ROOT.parent / "shared" / "tools" / "otelcol"')
    assert TOOL_FINDING.search("../shared/kit/build-host.sh")


def test_no_file_cites_a_design_outside_the_repository():
    offenders = []
    for name in tracked_text_files():
        if name == THIS:
            continue
        for lineno, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            if OUTSIDE_DESIGN.search(line):
                offenders.append(f"{name}:{lineno}: {line.strip()[:100]}")
    assert not offenders, "cite docs/design.md#<section> instead:\n" + "\n".join(offenders)


def test_only_tests_look_beside_the_repository_and_only_for_tools():
    offenders = []
    for name in tracked_text_files():
        if name == THIS:
            continue
        in_tests = name.startswith(TEST_TOOLING)
        for lineno, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            if not BESIDE.search(line):
                continue
            if in_tests and not BESIDE.search(TOOL_FINDING.sub("", line)):
                continue  # a test finding a real tool: allowed
            offenders.append(f"{name}:{lineno}: {line.strip()[:100]}")
    assert not offenders, ("product code and docs must stand alone; tests may only look for "
                           "../shared/tools or ../shared/kit:\n" + "\n".join(offenders))


def test_every_design_link_names_a_section_that_exists():
    anchors = design_anchors()
    assert {"architecture", "event-contract", "traces", "metrics", "guarantees"} <= anchors
    broken = []
    for name in tracked_text_files():
        for lineno, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            for anchor in DESIGN_LINK.findall(line):
                if anchor not in anchors:
                    broken.append(f"{name}:{lineno}: design.md#{anchor}")
    assert not broken, "no such section in docs/design.md:\n" + "\n".join(broken)
