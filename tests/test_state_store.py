"""StateStore: KIT-compatible bytes (checked against Go's encoding/json), locking, crash safety."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import kit_otel
from kit_otel.sources.sidecar import load_state
from kit_otel.state.state_store import (
    StateFileError,
    StateStore,
    decode_state,
    encode_state,
    sidecar_path,
)

SRC = str(Path(kit_otel.__file__).resolve().parent.parent)
GO_DIR = Path(__file__).parent / "go" / "statecompat"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _our_temps(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".*.tmp"))


# --- path rule and basic API ------------------------------------------------


@pytest.mark.parametrize(
    "session, expected",
    [
        ("/tmp/sessions/abc.jsonl", "/tmp/sessions/abc.ext-state.json"),
        ("/a/b/c.jsonl", "/a/b/c.ext-state.json"),
        ("/tmp/session-blob", "/tmp/session-blob.ext-state.json"),
        ("rel/x.json", "rel/x.json.ext-state.json"),
        ("x.jsonl.bak", "x.jsonl.bak.ext-state.json"),
    ],
)
def test_sidecar_path(session, expected):
    assert sidecar_path(session) == Path(expected)
    assert sidecar_path(Path(session)) == Path(expected)
    assert StateStore(session).path == Path(expected)


def test_sidecar_path_rejects_empty():
    with pytest.raises(ValueError):
        sidecar_path("")


def test_get_set_delete_list_snapshot(tmp_path):
    store = StateStore(tmp_path / "s.jsonl")
    assert store.snapshot() == {} and store.list() == [] and store.get("a") is None
    assert store.get("a", "dflt") == "dflt"
    store.set("b", "2")
    store.set("a", "1")
    store.set("a", "3")  # last write wins
    assert store.get("a") == "3"
    assert store.list() == ["a", "b"]
    assert store.snapshot() == {"a": "3", "b": "2"}
    assert (tmp_path / "s.ext-state.json").read_bytes() == b'{\n  "a": "3",\n  "b": "2"\n}'
    store.delete("a")
    store.delete("never-there")
    assert store.snapshot() == {"b": "2"}
    store.delete("b")
    assert (tmp_path / "s.ext-state.json").read_bytes() == b"{}"
    # Another instance sees the same file.
    StateStore(tmp_path / "s.jsonl").set("z", "")
    assert store.snapshot() == {"z": ""}
    assert _our_temps(store.path) == []


def test_delete_of_missing_key_writes_nothing(tmp_path):
    store = StateStore(tmp_path / "s.jsonl")
    store.delete("a")
    assert not store.path.exists()


def test_set_creates_parent_directories(tmp_path):
    store = StateStore(tmp_path / "deep" / "er" / "s.jsonl")
    store.set("k", "v")
    assert store.snapshot() == {"k": "v"}


def test_missing_and_empty_files_read_as_empty(tmp_path):
    store = StateStore(tmp_path / "s.jsonl")
    assert store.snapshot() == {}
    store.path.write_bytes(b"")
    assert store.snapshot() == {}
    store.set("a", "1")
    assert store.snapshot() == {"a": "1"}


@pytest.mark.parametrize("bad", [1, None, b"bytes", ["x"], {"a": "b"}])
def test_values_and_keys_must_be_str(tmp_path, bad):
    store = StateStore(tmp_path / "s.jsonl")
    with pytest.raises(TypeError):
        store.set("k", bad)
    with pytest.raises(TypeError):
        store.set(bad, "v")
    assert not store.path.exists()


def test_lone_surrogates_are_refused(tmp_path):
    with pytest.raises(ValueError):
        StateStore(tmp_path / "s.jsonl").set("k", "\ud800")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "malformed JSON"),
        (b"   ", "malformed JSON"),  # KIT: only a zero-length file is empty
        (b'["a"]', "expected a JSON object, got list"),
        (b"null", "expected a JSON object, got NoneType"),
        (b'"s"', "expected a JSON object, got str"),
        (b'{"a": 1}', "value of key 'a' is int, not a string"),
        (b'{"a": "x", "b": null}', "value of key 'b' is NoneType, not a string"),
        (b'{"a": {"b": "c"}}', "value of key 'a' is dict, not a string"),
    ],
)
def test_malformed_file_raises_state_file_error(tmp_path, content, reason):
    store = StateStore(tmp_path / "s.jsonl")
    store.path.write_bytes(content)
    with pytest.raises(StateFileError) as ei:
        store.snapshot()
    assert ei.value.path == store.path
    assert str(store.path) in str(ei.value) and reason in str(ei.value)
    # Writing refuses too, so the bad file is kept for inspection, not overwritten.
    with pytest.raises(StateFileError):
        store.set("k", "v")
    assert store.path.read_bytes() == content


def test_encoding_matches_go_marshal_indent_literally():
    # Expected bytes as written by Go >= 1.22 json.MarshalIndent(m, "", "  ").
    state = {
        "b": "<a href='x'>&amp;</a>",
        "a": 'q"\\/\n\r\t\b\f\x00\x1f\x7f',
        "é": "\u2028\u2029日本😀",
    }
    expected = (
        "{\n"
        '  "a": "q\\"\\\\/\\n\\r\\t\\b\\f\\u0000\\u001f\x7f",\n'
        '  "b": "\\u003ca href=\'x\'\\u003e\\u0026amp;\\u003c/a\\u003e",\n'
        '  "é": "\\u2028\\u2029日本😀"\n'
        "}"
    ).encode("utf-8")
    assert encode_state(state) == expected
    assert encode_state({}) == b"{}"
    assert decode_state(expected) == state


def test_decode_follows_go_for_bad_unicode():
    # Go's decoder turns each invalid byte and each lone surrogate escape into U+FFFD.
    assert decode_state(b'{"a": "\xff\xe2\x82A\\ud800"}') == {"a": "\ufffd\ufffd\ufffdA\ufffd"}
    assert decode_state(b'{"\\ud83d\\ude00": "ok"}') == {"😀": "ok"}


# --- byte-for-byte compatibility with Go's encoding/json ---------------------

TRICKY_CASES: list[dict[str, str]] = [
    {},
    {"a": "1"},
    {"hello": "world", "k2": '{"json":"value"}'},
    {"ключ": "значение", "emoji": "😀🚀", "cjk": "漢字かな", "combining": "e\u0301", "nbsp": "\u00a0\u200b\ufeff"},
    {"html": "<script>alert('x') && 1 > 0</script>", "<k>": "a&b", "&": ">"},
    {"quotes": 'say "hi"', "backslash": "C:\\path\\to\\", "slash": "a/b", "lit": "\\u0008 \\n"},
    {"newlines": "line1\nline2\r\n\tend", "ctl": "\x00\x01\x1e\x1f\x7f", "bf": "\b\f", "mix": "\\\b"},
    {"seps": "a\u2028b\u2029c", "\u2028key": "x"},
    {"": "empty key", "B": "1", "a": "2", "_": "3", "10": "4", "9": "5", "é": "6", "z": "7", "😀": "8", "\uffff": "9", "\u00ff": "10"},
    {"long": "x" * 20000 + "é" * 1000, "empty": ""},
]

# Raw files both decoders must agree on (state or error).
DECODE_CASES: list[bytes] = [
    b"",
    b'  {"a" : "b"}  \n',
    b'{"a":"\\u00e9\\/\\"","b":"\\ud83d\\ude00"}',
    b'{"a":"1","a":"2"}',
    b'{"a":"\xff\xe2\x82A\xed\xa0\x80z"}',
    b'{"a":"\\ud800x\\udc00"}',
    b"\xef\xbb\xbf{}",
    b'{"a":1}',
    b'{"a":true}',
    b"{not json",
    b"[]",
    b'{"a":"b"} trailing',
    b'{"a":"raw\ncontrol"}',
]


def _go_command() -> list[str]:
    if shutil.which("go"):
        return ["go", "run", "."]
    if shutil.which("yaegi"):
        return ["yaegi", "run", str(GO_DIR / "main.go")]
    pytest.skip("neither `go` nor `yaegi` is installed: cannot compare with Go's encoding/json")


@pytest.fixture(scope="module")
def go(tmp_path_factory):
    cmd = _go_command()
    env = dict(os.environ, GOTOOLCHAIN="local")  # never try to download a toolchain
    home = env.get("HOME")
    if "GOCACHE" not in env and not (home and os.access(home, os.W_OK)):
        env["GOCACHE"] = str(tmp_path_factory.mktemp("gocache"))

    def run(*args: str, stdin: bytes = b"") -> bytes:
        proc = subprocess.run([*cmd, *args], cwd=GO_DIR, input=stdin, capture_output=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout

    version = run("version").decode().strip()
    m = re.match(r"go(\d+)\.(\d+)", version)
    run.version = (int(m.group(1)), int(m.group(2))) if m else (99, 0)
    return run


_OLD_GO_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u00(08|0c)")


def _as_go122(data: bytes, version: tuple[int, int]) -> bytes:
    """Go < 1.22 wrote \\b and \\f as \\u0008 / \\u000c; KIT is built with Go >= 1.22.

    Only escapes preceded by an even number of backslashes are real escapes.
    """
    if version >= (1, 22):
        return data
    return _OLD_GO_ESCAPE.sub(lambda m: m.group(1) + (b"\\b" if m.group(2) == b"08" else b"\\f"), data)


def test_go_written_files_equal_ours_byte_for_byte(go, tmp_path):
    go_dir = tmp_path / "go"
    go_dir.mkdir()
    go("write", str(go_dir), stdin=json.dumps(TRICKY_CASES).encode())
    for i, state in enumerate(TRICKY_CASES):
        go_bytes = (go_dir / f"case-{i}.json").read_bytes()
        store = StateStore(tmp_path / "py" / f"case-{i}.jsonl")
        for k in sorted(state, reverse=True):  # insertion order must not matter
            store.set(k, state[k])
        if not state:  # an empty store has no file until written; KIT writes {}
            store.set("x", "y")
            store.delete("x")
        assert store.path.read_bytes() == _as_go122(go_bytes, go.version), f"case {i}: {state!r}"
        # ... and Go's file loads back to the same map in Python.
        assert load_state(go_dir / f"case-{i}.json") == state
        assert decode_state(go_bytes) == state


def test_go_reads_files_written_by_state_store(go, tmp_path):
    paths = []
    for i, state in enumerate(TRICKY_CASES):
        store = StateStore(tmp_path / f"case-{i}.jsonl")
        store.set("seed", "x")
        store.delete("seed")
        for k, v in state.items():
            store.set(k, v)
        paths.append(str(store.path))
    lines = go("read", *paths).decode().splitlines()
    assert [json.loads(line) for line in lines] == [{"state": s} for s in TRICKY_CASES]


def test_go_and_python_decode_the_same_files_alike(go, tmp_path):
    paths = []
    for i, data in enumerate(DECODE_CASES):
        p = tmp_path / f"raw-{i}.json"
        p.write_bytes(data)
        paths.append(p)
    results = [json.loads(line) for line in go("read", *map(str, paths)).decode().splitlines()]
    for p, data, res in zip(paths, DECODE_CASES, results):
        try:
            ours = {"state": decode_state(data, p)}
        except StateFileError:
            ours = {"error": True}
        theirs = {"error": True} if "error" in res else res
        assert ours == theirs, f"{data!r}: go={res!r}"


# --- concurrency -------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from kit_otel.state.state_store import StateStore
    session, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = StateStore(session)
    sys.stdin.read()  # start line: all writers begin together
    for i in range(n):
        store.set(key, str(i))
    """
)


def test_processes_and_threads_never_lose_updates_or_tear_the_file(tmp_path):
    session = tmp_path / "s.jsonl"
    store = StateStore(session)
    n, n_procs, n_threads = 120, 4, 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(session), f"proc{i}", str(n)],
            stdin=subprocess.PIPE,
            env=_env(),
        )
        for i in range(n_procs)
    ]
    keys = [f"proc{i}" for i in range(n_procs)] + [f"thread{i}" for i in range(n_threads)]
    done = threading.Event()
    reads: list[int] = []
    problems: list[str] = []

    def reader():
        last: dict[str, int] = {}
        while not done.is_set():
            try:
                # Straight from disk, like KIT's LoadStateFromFile.
                state = load_state(store.path)
            except StateFileError as e:
                problems.append(f"torn read: {e}")
                continue
            reads.append(1)
            if set(last) - set(state):  # keys are never deleted: a truncated file would show
                problems.append(f"keys vanished: {sorted(set(last) - set(state))}")
            for k, v in state.items():
                if k not in keys or not v.isdigit() or not 0 <= int(v) < n:
                    problems.append(f"unexpected {k}={v!r}")
                elif int(v) < last.get(k, -1):  # a lost update would show as going back
                    problems.append(f"{k} went back from {last[k]} to {v}")
                else:
                    last[k] = int(v)

    def thread_writer(key):
        s = StateStore(session)  # separate instances: the lock is per file, not per object
        try:
            for i in range(n):
                s.set(key, str(i))
        except Exception as e:
            problems.append(f"{key}: {e!r}")

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    threads = [threading.Thread(target=thread_writer, args=(f"thread{i}",)) for i in range(n_threads)]
    try:
        for p in procs:
            p.stdin.close()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [p.wait(timeout=300) for p in procs] == [0] * n_procs
    finally:
        done.set()
        rt.join()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    assert problems == []
    assert reads, "the reader never read"
    assert store.snapshot() == {k: str(n - 1) for k in keys}
    assert _our_temps(store.path) == []


# --- crash safety ------------------------------------------------------------

# Runs one StateStore.set in a child that SIGKILLs itself at the KILL_AT-th
# file-system call of interest (a write is cut in half first), so every step
# of the write path is covered deterministically.
CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from kit_otel.state.state_store import StateStore
    session, kill_at, value = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = StateStore(session)
    calls = 0

    def hook(name, real):
        def wrapped(*args, **kw):
            global calls
            calls += 1
            if calls == kill_at:
                if name == "write":
                    real(args[0], bytes(args[1])[: max(1, len(args[1]) // 2)])
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kw)
        return wrapped

    for name in ("open", "write", "fsync", "replace", "close", "unlink"):
        setattr(os, name, hook(name, getattr(os, name)))
    store.set("k", value)
    sys.stdout.write(str(calls))
    """
)


def _crash_once(session: Path, kill_at: int, value: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CRASHER, str(session), str(kill_at), value],
        capture_output=True, text=True, env=_env(), timeout=120,
    )


def test_sigkill_at_every_step_of_a_write_leaves_old_or_new_state(tmp_path):
    session = tmp_path / "s.jsonl"
    store = StateStore(session)
    old = {"k": "old", "other": "kept"}
    new_value = "new-" + "é" * 50000
    store.set("k", "old")
    store.set("other", "kept")

    full = _crash_once(session, 0, new_value)
    assert full.returncode == 0, full.stderr
    total = int(full.stdout)
    assert total >= 5  # open lock, open tmp, write, fsync, replace, ...

    seen = set()
    for kill_at in range(1, total + 1):
        store.set("k", "old")
        proc = _crash_once(session, kill_at, new_value)
        assert proc.returncode == -signal.SIGKILL, (kill_at, proc.stderr)
        state = load_state(store.path)  # never torn, never empty
        assert state in (old, {"k": new_value, "other": "kept"}), kill_at
        seen.add(state["k"] == new_value)
        # Later writes still work, and clean up the temp file the crash left.
        assert not Path(f"{store.path}.tmp").exists()  # KIT's fixed name is never used
        store.set("after", str(kill_at))
        assert store.get("after") == str(kill_at)
        assert _our_temps(store.path) == []
        store.delete("after")
    assert seen == {False, True}  # both sides of the rename were hit


RANDOM_WRITER = textwrap.dedent(
    """
    import sys
    from kit_otel.state.state_store import StateStore
    store = StateStore(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        store.set("v", f"{i}:" + chr(0x61 + i % 26) * (100000 + i % 7))
        store.set("i", str(i))
    """
)


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_random_moments_never_tears_the_file(tmp_path, seed):
    rng = random.Random(seed)
    session = tmp_path / "s.jsonl"
    store = StateStore(session)
    proc = subprocess.Popen(
        [sys.executable, "-c", RANDOM_WRITER, str(session)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        threading.Event().wait(rng.uniform(0.0, 0.3))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    state = load_state(store.path)
    if state:
        # "v" is written before "i": v's counter is i or i + 1, and v is whole.
        head, _, body = state["v"].partition(":")
        assert int(head) in (int(state.get("i", "0")), int(state.get("i", "0")) + 1)
        assert body == chr(0x61 + int(head) % 26) * (100000 + int(head) % 7)
    store.set("after", "crash")
    assert load_state(store.path)["after"] == "crash"
    assert _our_temps(store.path) == []


def test_stale_temps_are_cleaned_but_kits_own_tmp_is_left_alone(tmp_path):
    store = StateStore(tmp_path / "s.jsonl")
    store.set("a", "1")
    ours = Path(f"{store.path}.4242.deadbeef0000.tmp")
    ours.write_bytes(b'{"torn":')
    kits = Path(f"{store.path}.tmp")  # a running KIT may be mid-write into it
    kits.write_bytes(b'{"half')
    assert store.snapshot() == {"a": "1"}  # temp files are never read
    store.set("b", "2")
    assert not ours.exists()
    assert kits.read_bytes() == b'{"half'
    assert store.snapshot() == {"a": "1", "b": "2"}


def test_file_mode_follows_kit(tmp_path):
    store = StateStore(tmp_path / "s.jsonl")
    old = os.umask(0o022)
    try:
        store.set("a", "1")
    finally:
        os.umask(old)
    assert store.path.stat().st_mode & 0o777 == 0o644


def test_writes_replace_the_file_instead_of_rewriting_it(tmp_path):
    store = StateStore(tmp_path / "s.jsonl")
    store.set("a", "1")
    with open(store.path, "rb") as old:  # a reader that opened the old version
        ino = os.fstat(old.fileno()).st_ino
        store.set("a", "2")
        assert old.read() == b'{\n  "a": "1"\n}'
    assert store.path.stat().st_ino != ino
