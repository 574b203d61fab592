"""load_state and SidecarWatcher: following ext-state sidecars of live sessions."""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import pytest

from kit_otel.sources.sidecar import MAX_BYTES, SidecarWatcher, StateChange, load_state
from kit_otel.state.state_store import StateFileError, StateStore, encode_state, sidecar_path


def kit_write(path: Path, data: bytes) -> None:
    """Replace the file the way KIT does: ``<file>.tmp`` then rename."""
    tmp = Path(f"{path}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.fixture
def session(tmp_path) -> str:
    return str(tmp_path / "abc.jsonl")


@pytest.fixture
def watcher(session):
    w = SidecarWatcher()
    w.watch(session)
    yield w
    w.stop()


# --- load_state --------------------------------------------------------------


def test_load_state_missing_and_empty(tmp_path):
    assert load_state(tmp_path / "nope.ext-state.json") == {}
    (tmp_path / "e.json").write_bytes(b"")
    assert load_state(tmp_path / "e.json") == {}


def test_load_state_reads_kit_format(tmp_path):
    p = tmp_path / "s.json"
    p.write_bytes(encode_state({"a": "<1>", "b": "é"}))
    assert load_state(p) == {"a": "<1>", "b": "é"}
    assert load_state(str(p)) == {"a": "<1>", "b": "é"}


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'{"a": ', "malformed JSON"),
        (b'["a"]', "expected a JSON object"),
        (b'{"a": 2}', "value of key 'a' is int, not a string"),
        (b'{"a": null}', "not a string"),
    ],
)
def test_load_state_rejects_bad_content(tmp_path, content, reason):
    p = tmp_path / "s.json"
    p.write_bytes(content)
    with pytest.raises(StateFileError) as ei:
        load_state(p)
    assert str(p) in str(ei.value) and reason in str(ei.value)


def test_load_state_size_limit(tmp_path):
    assert MAX_BYTES == 1 << 20
    p = tmp_path / "s.json"
    exact = encode_state({"k": "x" * 100})
    p.write_bytes(exact)
    assert load_state(p, max_bytes=len(exact)) == {"k": "x" * 100}
    with pytest.raises(StateFileError, match=f"{len(exact)} bytes, over the {len(exact) - 1}-byte limit"):
        load_state(p, max_bytes=len(exact) - 1)
    p.write_bytes(encode_state({"k": "x" * MAX_BYTES}))
    with pytest.raises(StateFileError, match="limit"):
        load_state(p)


def test_load_state_unreadable_is_a_state_file_error(tmp_path):
    d = tmp_path / "dir.json"
    d.mkdir()
    with pytest.raises(StateFileError, match="cannot read"):
        load_state(d)


# --- watcher -----------------------------------------------------------------


def test_missing_sidecar_is_empty_and_quiet(session, watcher):
    assert watcher.poll() == []
    assert watcher.current(session) == {}
    assert watcher.poll() == []


def test_first_poll_reports_existing_state(session):
    StateStore(session).set("a", "1")
    w = SidecarWatcher()
    w.watch(session)
    assert w.current(session) == {}  # nothing read before the first poll
    assert w.poll() == [StateChange(session, {"a": "1"}, None)]
    assert w.poll() == []
    assert w.current(session) == {"a": "1"}


def test_atomic_rename_is_seen_on_the_next_poll(session, watcher):
    path = sidecar_path(session)
    watcher.poll()
    kit_write(path, encode_state({"a": "1"}))
    assert watcher.poll() == [StateChange(session, {"a": "1"})]
    kit_write(path, encode_state({"a": "2"}))  # same size, new inode
    assert watcher.poll() == [StateChange(session, {"a": "2"})]
    store = StateStore(session)
    store.set("b", "x")
    assert watcher.poll() == [StateChange(session, {"a": "2", "b": "x"})]
    store.delete("a")
    store.delete("b")
    assert watcher.poll() == [StateChange(session, {})]
    assert watcher.poll() == []


def test_a_rewrite_with_identical_content_is_not_a_change(session, watcher):
    kit_write(sidecar_path(session), encode_state({"a": "1"}))
    assert len(watcher.poll()) == 1
    kit_write(sidecar_path(session), encode_state({"a": "1"}))
    assert watcher.poll() == []


def test_deleted_sidecar_means_empty_state(session, watcher):
    StateStore(session).set("a", "1")
    assert watcher.poll() == [StateChange(session, {"a": "1"})]
    sidecar_path(session).unlink()
    assert watcher.poll() == [StateChange(session, {})]
    assert watcher.current(session) == {}


def test_malformed_keeps_last_good_state_and_reports_once(session, watcher):
    path = sidecar_path(session)
    kit_write(path, encode_state({"a": "1"}))
    watcher.poll()

    kit_write(path, b'{"a": "2", "b": ')
    [change] = watcher.poll()
    assert change.state == {"a": "1"} and change.session_path == session
    assert "malformed JSON" in change.error and str(path) in change.error
    assert watcher.poll() == [] and watcher.poll() == []  # once per change
    assert watcher.current(session) == {"a": "1"}

    kit_write(path, b'{"a": 3}')  # a different bad change is reported again
    [change] = watcher.poll()
    assert change.state == {"a": "1"} and "not a string" in change.error
    assert watcher.poll() == []

    kit_write(path, encode_state({"a": "4"}))
    assert watcher.poll() == [StateChange(session, {"a": "4"}, None)]
    assert watcher.current(session) == {"a": "4"}


def test_recovery_to_the_same_state_clears_the_error(session, watcher):
    path = sidecar_path(session)
    kit_write(path, encode_state({"a": "1"}))
    watcher.poll()
    kit_write(path, b"[]")
    assert watcher.poll()[0].error
    kit_write(path, encode_state({"a": "1"}))
    assert watcher.poll() == [StateChange(session, {"a": "1"}, None)]


def test_malformed_before_any_good_state(session, watcher):
    kit_write(sidecar_path(session), b"nope")
    [change] = watcher.poll()
    assert change.state == {} and "malformed JSON" in change.error
    assert watcher.poll() == []


def test_oversize_is_refused(session):
    path = sidecar_path(session)
    w = SidecarWatcher(max_bytes=64)
    w.watch(session)
    kit_write(path, encode_state({"a": "small"}))
    w.poll()
    kit_write(path, encode_state({"a": "x" * 100}))
    [change] = w.poll()
    assert change.state == {"a": "small"} and "over the 64-byte limit" in change.error
    assert w.poll() == []
    assert w.current(session) == {"a": "small"}


def test_temp_files_are_never_read(session, watcher, monkeypatch):
    path = sidecar_path(session)
    kit_write(path, encode_state({"a": "1"}))
    opened: list[str] = []
    real_open = os.open

    def spy(p, *args, **kw):
        opened.append(os.fspath(p))
        return real_open(p, *args, **kw)

    monkeypatch.setattr(os, "open", spy)
    assert watcher.poll() == [StateChange(session, {"a": "1"})]
    # Writers in progress: KIT's fixed temp name and StateStore's unique one.
    Path(f"{path}.tmp").write_bytes(b'{"a": "2", "b"')
    Path(f"{path}.123.abcdef.tmp").write_bytes(b'{"a": "3"')
    for _ in range(3):
        assert watcher.poll() == []
    assert watcher.current(session) == {"a": "1"}
    assert opened and all(p == os.fspath(path) for p in opened)
    os.replace(f"{path}.123.abcdef.tmp", path)  # ... until one is renamed in
    [change] = watcher.poll()
    assert change.error and change.state == {"a": "1"}


def test_same_size_change_within_timestamp_granularity_is_seen(session, watcher):
    # An in-place rewrite that keeps inode, size and (as on a coarse clock)
    # mtime has the old signature; it must still be picked up while recent.
    path = sidecar_path(session)
    kit_write(path, encode_state({"a": "1"}))
    watcher.poll()
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(encode_state({"a": "2"}))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = path.stat()
    assert (st2.st_ino, st2.st_mtime_ns, st2.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)
    assert watcher.poll() == [StateChange(session, {"a": "2"})]


def test_settled_files_are_not_reread(session, watcher, monkeypatch):
    path = sidecar_path(session)
    kit_write(path, encode_state({"a": "1"}))
    old = path.stat().st_mtime_ns - 60 * 10**9
    os.utime(path, ns=(old, old))
    assert len(watcher.poll()) == 1
    reads: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: reads.append(p) or real_open(p, *a, **k))
    assert watcher.poll() == [] and watcher.poll() == []
    assert reads == []  # one stat per poll, no open


def test_several_sessions_and_unwatch(tmp_path):
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b")
    w = SidecarWatcher()
    w.watch(a)
    w.watch(Path(b))
    w.watch(a)  # idempotent
    assert w.watched() == sorted([a, b])
    StateStore(a).set("k", "A")
    StateStore(b).set("k", "B")
    assert sorted(w.poll(), key=lambda c: c.session_path) == [
        StateChange(a, {"k": "A"}),
        StateChange(b, {"k": "B"}),
    ]
    assert (tmp_path / "b.ext-state.json").exists()
    w.unwatch(b)
    StateStore(b).set("k", "B2")
    assert w.poll() == []
    with pytest.raises(KeyError):
        w.current(b)
    w.unwatch(b)  # unwatching twice is harmless


def test_background_thread_reports_changes(session):
    changes: queue.Queue[StateChange] = queue.Queue()
    calls = []

    def callback(change):
        calls.append(change)
        changes.put(change)
        if len(calls) == 1:
            raise RuntimeError("a failing callback must not stop the watcher")

    w = SidecarWatcher()
    w.watch(session)
    w.start(interval=0.01, callback=callback)
    try:
        with pytest.raises(RuntimeError):
            w.start()
        store = StateStore(session)
        store.set("a", "1")
        assert changes.get(timeout=30) == StateChange(session, {"a": "1"})
        store.set("a", "2")
        assert changes.get(timeout=30) == StateChange(session, {"a": "2"})
        assert w.current(session) == {"a": "2"}
    finally:
        w.stop()
    assert not any(t.name == "kit-otel-sidecar" for t in threading.enumerate())
    w.stop()  # stopping twice is harmless


def test_background_thread_without_callback_keeps_current(session):
    w = SidecarWatcher()
    w.watch(session)
    w.start(interval=0.01)
    try:
        StateStore(session).set("a", "1")
        for _ in range(3000):
            if w.current(session) == {"a": "1"}:
                break
            threading.Event().wait(0.01)
        assert w.current(session) == {"a": "1"}
    finally:
        w.stop()
