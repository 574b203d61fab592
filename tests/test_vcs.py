"""Repository, branch and commit of a session's cwd from `.git` files, checked against real
checkouts made by git itself (branches, packed refs, detached HEAD, linked worktrees) and on the
turn spans of a real translated session — never as a metric label."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import make_harness
from scenarios import script

from kit_otel.model import names as n
from kit_otel.cli.generator import write_session_header
from kit_otel.translate.translator import TranslatorSettings
from kit_otel.translate.vcs import read_checkout

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git makes the checkouts")


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    path = tmp_path / "widget"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", "https://alice:s3cret-token@github.com/acme/widget.git")
    (path / "a.txt").write_text("a")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "one")
    return path


def test_branch_commit_and_remote_without_credentials(repo):
    (repo / "src" / "deep").mkdir(parents=True)
    checkout = read_checkout(str(repo / "src" / "deep"))
    assert checkout.branch == "main"
    assert checkout.commit == git(repo, "rev-parse", "HEAD")
    assert checkout.url == "https://github.com/acme/widget.git"
    assert "s3cret" not in repr(checkout)
    assert checkout.repository == "widget"


def test_packed_refs(repo):
    git(repo, "checkout", "-q", "-b", "feature/x")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "feature" / "x").exists()
    checkout = read_checkout(str(repo))
    assert (checkout.branch, checkout.commit) == ("feature/x", git(repo, "rev-parse", "HEAD"))


def test_detached_head(repo):
    first = git(repo, "rev-parse", "HEAD")
    (repo / "b.txt").write_text("b")
    git(repo, "add", "b.txt")
    git(repo, "commit", "-q", "-m", "two")
    git(repo, "checkout", "-q", first)
    checkout = read_checkout(str(repo))
    assert (checkout.branch, checkout.commit) == ("", first)
    attrs = checkout.span_attributes()
    assert n.VCS_REF_HEAD_NAME not in attrs and attrs[n.VCS_REF_HEAD_REVISION] == first


def test_linked_worktree_has_its_own_branch_and_the_shared_remote(repo, tmp_path):
    wt = tmp_path / "wt-fix"
    git(repo, "worktree", "add", "-q", "-b", "fix", str(wt))
    (wt / "c.txt").write_text("c")
    git(wt, "add", "c.txt")
    git(wt, "commit", "-q", "-m", "fix")
    checkout = read_checkout(str(wt))
    assert checkout.branch == "fix"
    assert checkout.commit == git(wt, "rev-parse", "HEAD") != git(repo, "rev-parse", "HEAD")
    assert checkout.url == "https://github.com/acme/widget.git"
    assert checkout.repository == "widget"


def test_unborn_branch_and_no_remote(tmp_path):
    fresh = tmp_path / "scratch"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "trunk")
    checkout = read_checkout(str(fresh))
    assert (checkout.branch, checkout.commit, checkout.url) == ("trunk", "", "")
    assert checkout.repository == "scratch"


@pytest.mark.parametrize("head", ["ref: refs/heads/../../../../etc/passwd\n", "garbage\n", ""])
def test_hostile_or_broken_head_reads_nothing_outside(tmp_path, head):
    fake = tmp_path / "fake"
    (fake / ".git").mkdir(parents=True)
    (fake / ".git" / "HEAD").write_text(head)
    checkout = read_checkout(str(fake))
    assert checkout is None or checkout.commit == ""


def test_not_a_checkout_or_missing_directory(tmp_path):
    assert read_checkout(str(tmp_path / "nowhere" / "at" / "all")) is None
    assert read_checkout("") is None


def test_turn_spans_carry_the_checkout_and_metrics_do_not(repo, tmp_path):
    sessions = tmp_path / "sessions"
    path = sessions / "proj" / "2026-06-09T13-18-10-000Z_abc.jsonl"
    path.parent.mkdir(parents=True)
    write_session_header(path, str(repo), "sess-1", 1_781_000_000_000_000_000)
    s = script(path=str(path))
    s.session_start()
    s.turn("one", [])
    first = len(s.events)
    s.turn("two", [])
    h = make_harness(TranslatorSettings(sessions_root=str(sessions))).feed(s.events[:first])
    git(repo, "checkout", "-q", "-b", "next")  # the branch changes between turns
    h.feed(s.events[first:]).close()
    turns = sorted(h.spans_named(n.SPAN_TURN), key=lambda sp: sp.start_time)
    assert [t.attributes[n.VCS_REF_HEAD_NAME] for t in turns] == ["main", "next"]
    for t in turns:
        assert t.attributes[n.VCS_REPOSITORY_NAME] == "widget"
        assert t.attributes[n.VCS_REPOSITORY_URL_FULL] == "https://github.com/acme/widget.git"
        assert t.attributes[n.VCS_REF_HEAD_REVISION] == git(repo, "rev-parse", "HEAD")
    labels = {k for p in h.points("kit.turns") for k in p.attributes}
    assert labels and not any(k.startswith("vcs.") for k in labels)

    off = make_harness(TranslatorSettings(sessions_root=str(sessions), git_attribution=False))
    off.feed(s.events).close()
    assert not any(k.startswith("vcs.") for t in off.spans_named(n.SPAN_TURN)
                   for k in t.attributes)
