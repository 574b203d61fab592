"""inotify wake-ups for sidecar changes (the stat-based poll stays the judge and the fallback)."""

import select

import pytest
import scenarios as sc
from harness import make_harness

from kit_otel.sources.dir_watch import DirectoryWatcher
from kit_otel.cli.generator import write_session_header
from kit_otel.sources.sidecar_follow import SidecarFollower
from kit_otel.state.state_store import StateStore, sidecar_path
from kit_otel.translate.ext_state import StatePolicy
from kit_otel.translate.translator import TranslatorSettings


def watcher_or_skip() -> DirectoryWatcher:
    try:
        return DirectoryWatcher()
    except OSError as exc:  # not Linux: the polling fallback is all there is
        pytest.skip(f"no inotify here: {exc}")


def test_a_rename_into_a_watched_directory_wakes_the_watcher(tmp_path):
    watcher = watcher_or_skip()
    session = tmp_path / "s.jsonl"
    assert watcher.watch(tmp_path)
    assert not watcher.watch(tmp_path / "missing")
    assert watcher.changed() == set()
    StateStore(session).set("k", "v")  # temp file + rename, as KIT does
    assert watcher.wait(30)
    assert sidecar_path(session) in watcher.changed()
    assert watcher.changed() == set()  # consumed
    watcher.close()


def test_follower_wakes_on_a_sidecar_change_and_applies_it(tmp_path):
    watcher_or_skip()
    session = tmp_path / "home--a--p" / "2026-11-25T10-00-00-000Z_aaaaaaaaaaaa.jsonl"
    write_session_header(session, "/home/a/p", "a" * 32, sc.T0)
    s = sc.script(str(session))
    s.turn("hi", [sc.Step(text="ok", usage=sc.Usage(1, 1))])
    events = [e for e in s.events if e.type != "agent_end"]
    for e in events:
        e.state = None
    h = make_harness(TranslatorSettings(sessions_root=str(tmp_path),
                                        state=StatePolicy(value_keys=("plan",)))).feed(events)
    follower = SidecarFollower(h.translator, str(tmp_path))
    assert follower.fileno() is not None
    assert follower.poll() == 0  # nothing there yet; the session's directory is now watched
    StateStore(session).set("plan", "b")
    ready, _, _ = select.select([follower.fileno()], [], [], 30)
    assert ready  # woken by the rename, not by a timer
    assert follower.poll() == 1
    h.close()
    turn = h.spans_named("invoke_agent kit")[0]
    assert turn.attributes["kit.ext_state.plan"] == "b"
    follower.close()


def test_the_spool_mask_names_appended_truncated_renamed_and_removed_files(tmp_path):
    from kit_otel.sources.dir_watch import SPOOL_MASK
    try:
        watcher = DirectoryWatcher(SPOOL_MASK)
    except OSError as exc:
        pytest.skip(f"no inotify here: {exc}")
    spool = tmp_path / "spool"
    spool.mkdir()
    a, b = spool / "a.ndjson", spool / "b.ndjson"
    a.write_bytes(b"1\n")
    b.write_bytes(b"1\n")
    assert watcher.watch(spool) and watcher.watching(spool)
    with open(a, "ab") as out:  # an append, as the bridge writes
        out.write(b"2\n")
    assert watcher.changed() == {a}
    with open(b, "r+b") as out:
        out.truncate(0)
    assert watcher.changed() == {b}
    (spool / "tmp").write_bytes(b"x\n")
    (spool / "tmp").rename(a)  # rotated: another file at the name
    assert a in watcher.changed()
    b.unlink()
    assert watcher.changed() == {b}
    a.unlink()
    spool.rmdir()  # the watch is gone: the caller must look at everything and watch again
    changed = watcher.changed()
    assert None in changed and not watcher.watching(spool)
    spool.mkdir()
    assert watcher.watch(spool)
    spool.rename(tmp_path / "spool.old")  # renamed away, a new one made at the name
    spool.mkdir()
    assert None in watcher.changed() and not watcher.watching(spool)
    assert watcher.watch(spool)
    (spool / "c.ndjson").write_bytes(b"1\n")
    (tmp_path / "spool.old" / "old.ndjson").write_bytes(b"1\n")  # not watched any more
    assert spool / "c.ndjson" in watcher.changed()
    assert not any(p and p.name == "old.ndjson" for p in watcher.changed())
    watcher.close()
