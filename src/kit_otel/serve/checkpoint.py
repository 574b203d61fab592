"""Checkpoints of `kit-otel serve`: where each KIT process's events were read up to, the
translator state needed to continue from there, and the counter totals that went with them.

A checkpoint of one KIT process (a *stream*, see spool.py) is taken at a quiescent point (no open
turn in any of its sessions), so the state to carry over is small and session-level: the
translator's `SessionSnapshot` records (translate/snapshot.py), an explicit, versioned schema.

Counter totals come from a per-stream ledger: every counter add made while translating a
stream's events is also added to that stream's ledger (`AttributedCounters`). A checkpoint saves
the ledger as it was at that quiescent point, so after a restart the fresh counters get exactly
the totals of what the checkpoints cover, and re-reading the spool from the checkpointed offsets
adds the rest: no loss, no double counting.

The whole state lives in one JSON file in `state_dir`, replaced atomically (temp file, fsync,
rename, fsync of the directory) each time exported spans let a checkpoint advance.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import msgspec

from kit_otel.state import atomic_file
from kit_otel.state.atomic_file import remove_stale_temps
from kit_otel.translate.instruments import KitInstruments, LabelKey, LedgerCounter
from kit_otel.translate.snapshot import SESSION_SCHEMA, SessionSnapshot

log = logging.getLogger("kit_otel.serve")

# the file's format; its session records follow the session schema of that version (a new
# SESSION_SCHEMA gets a new STATE_VERSION and its own row: old rows never change)
STATE_VERSION = 2
SESSION_SCHEMA_OF_VERSION = {1: 1, 2: 2}
assert SESSION_SCHEMA_OF_VERSION[STATE_VERSION] == SESSION_SCHEMA


class StreamRecord(msgspec.Struct):
    """What `serve` reads back of one stream's checkpoint (checked at load: a bad value is a
    one-line refusal, not a failure later). Sessions and the ledger are checked on their own."""

    key: str
    pid: int
    files: dict[str, tuple[int, int]] = {}  # spool file name → (offset, line number)
    serial: int = 0
    pids: list[int] = []
    next_seq: int | None = None
    first_file: str = ""
    first_started: str = ""
    ordered: bool = True
    created_ns: int | None = None
    last_type: str = ""
    process: dict[str, str] = {}  # the KIT process's trace parent and model (its bridge header)


class SavedState(msgspec.Struct):
    version: int
    streams: dict[str, dict]
    retired: dict[str, list] = {}
    daemon: dict[str, list] = {}
    bounded: dict[str, list[str]] = {}
STATE_FILE = "serve-checkpoint.json"

Totals = dict[str, dict[LabelKey, float]]  # counter name → label set → total


class CheckpointError(RuntimeError):
    pass


# ── ledgers ─────────────────────────────────────────────────────────────────────────────────

def merge_totals(into: Totals, other: Totals) -> Totals:
    for name, sums in other.items():
        target = into.setdefault(name, {})
        for key, value in sums.items():
            target[key] = target.get(key, 0) + value
    return into


def copy_totals(totals: Totals) -> Totals:
    # dict() and .copy() are single C calls: safe while another thread adds to the ledger
    return {name: sums.copy() for name, sums in dict(totals).items()}


def totals_to_json(totals: Totals) -> dict[str, list]:
    return {name: [[dict(key), value] for key, value in sums.items()]
            for name, sums in totals.items() if sums}


def totals_from_json(data: dict[str, list]) -> Totals:
    return {name: {frozenset(labels.items()): value for labels, value in rows}
            for name, rows in data.items()}


class _AttributedCounter:
    """A LedgerCounter whose adds also go to the ledger of the stream being translated."""

    __slots__ = ("inner", "name", "_owner")

    def __init__(self, inner: LedgerCounter, owner: "AttributedCounters"):
        self.inner = inner
        self.name = inner.name
        self._owner = owner

    def add(self, amount: float, attributes: dict | None = None) -> None:
        key = frozenset(attributes.items()) if attributes else frozenset()
        self.inner.add_key(key, amount)
        sums = self._owner.current.setdefault(self.name, {})
        sums[key] = sums.get(key, 0) + amount

    def add_key(self, key: LabelKey, amount: float) -> None:
        self.inner.add_key(key, amount)
        sums = self._owner.current.setdefault(self.name, {})
        sums[key] = sums.get(key, 0) + amount

    def totals(self) -> dict[LabelKey, float]:
        return self.inner.totals()

    def restore(self, totals: dict[LabelKey, float]) -> None:
        self.inner.restore(totals)


class AttributedCounters:
    """Installs attribution on every counter of a KitInstruments. Adds go to `current`, the
    ledger of the stream being translated (`attribute(ledger)`), else to `fallback`."""

    def __init__(self, instruments: KitInstruments, fallback: Totals):
        self.fallback = fallback
        self.current: Totals = fallback
        self._lock = threading.Lock()  # guards reads of `fallback` from other threads
        self.counters: dict[str, LedgerCounter] = {}
        for attr, value in list(vars(instruments).items()):
            if isinstance(value, LedgerCounter):
                self.counters[value.name] = value
                setattr(instruments, attr, _AttributedCounter(value, self))

    @contextmanager
    def attribute(self, ledger: Totals) -> Iterator[None]:
        previous = self.current
        self.current = ledger
        try:
            yield
        finally:
            self.current = previous

    def restore(self, totals: Totals) -> None:
        """Add saved totals to the live counters (not to any ledger)."""
        for name, sums in totals.items():
            counter = self.counters.get(name)
            if counter is not None:
                counter.restore(sums)
            else:
                log.warning("checkpoint has totals of an unknown counter %s: ignored", name)


# ── session state ───────────────────────────────────────────────────────────────────────────

def encode_sessions(snapshots: list[SessionSnapshot]) -> list[dict[str, Any]]:
    return [snap.to_checkpoint() for snap in snapshots]


def decode_sessions(records: list[Any], schema: int) -> list[SessionSnapshot]:
    """The session records of a stream checkpoint written with `schema`; ValueError names
    what is wrong (CheckpointStore.load turns it into one line for the user)."""
    return [SessionSnapshot.from_checkpoint(record, schema) for record in records]


def bounded_values(instruments: KitInstruments) -> dict[str, list[str]]:
    """The label values each cardinality limiter has let through (so `other` folds the same
    values after a restart)."""
    return {name: getattr(instruments, name).values()
            for name in ("tool_value", "model_value", "event_type_value", "project_value")}


def restore_bounded_values(instruments: KitInstruments, saved: dict[str, list[str]]) -> None:
    for name, values in saved.items():
        limiter = getattr(instruments, name, None)
        if limiter is not None:
            limiter.admit(values)


# ── the state file ──────────────────────────────────────────────────────────────────────────

def write_atomically(path: Path, data: bytes) -> None:
    """The checkpoint file, readable by its owner only. Only one daemon uses a state
    directory (it holds the lock), so temp files left by a crashed one are stale."""
    remove_stale_temps(path)
    atomic_file.write_atomically(path, data, mode=0o600)


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _encode_stream_entry(key: str, snap: dict[str, Any]) -> bytes:
    """`"key":{...}` of one stream in the state file (its ledger as JSON rows)."""
    snap = dict(snap)
    snap["ledger"] = totals_to_json(snap["ledger"])
    return _compact_json(key) + b":" + _compact_json(snap)


class CheckpointStore:
    """The committed state: the latest exported checkpoint of every stream, the totals of
    streams whose spool files were removed, and the totals of input that belongs to no stream.

    `commit` is called by the export thread, `retire` and `save` by the daemon's thread."""

    def __init__(self, state_dir: Path, daemon_totals: Totals | None = None):
        self.path = Path(state_dir) / STATE_FILE
        self.streams: dict[str, dict[str, Any]] = {}
        self.retired: Totals = {}
        self.daemon_totals: Totals = daemon_totals if daemon_totals is not None else {}
        self.bounded: dict[str, list[str]] = {}
        self.bounded_source = None  # callable → current bounded values, set by the daemon
        self.commits = 0
        self.writes = 0
        # each stream's entry of the state file, as JSON, made once when it is committed: a
        # write joins these instead of converting every stream again (with a thousand streams,
        # re-encoding all of them at every commit made catching up quadratic)
        self._encoded: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load(self) -> bool:
        """Read the state file; False when there is none (first start). Raises
        CheckpointError when it cannot be used."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:  # the temp file of a process killed mid-write: never renamed, never used
                stale.unlink()
            except OSError:
                pass
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            data = json.loads(raw)
            version = data.get("version") if isinstance(data, dict) else None
            schema = SESSION_SCHEMA_OF_VERSION.get(version) if type(version) is int else None
            if schema is None:
                raise ValueError(f"version {version!r} is not one this kit-otel reads "
                                 f"({', '.join(map(str, SESSION_SCHEMA_OF_VERSION))})")
            msgspec.convert(data, SavedState, strict=True)
            for key, snap in data["streams"].items():
                record = msgspec.convert(snap, StreamRecord, strict=True)
                if record.key != key:
                    raise ValueError(f"stream {key!r} is saved as {record.key!r}")
            self.streams = dict(data["streams"])
            self._encoded.clear()
            for snap in self.streams.values():
                snap["ledger"] = totals_from_json(snap.get("ledger", {}))
                # checked now, and rewritten in today's schema at the next save
                snap["sessions"] = encode_sessions(decode_sessions(snap.get("sessions", []),
                                                                   schema))
            self.retired = totals_from_json(data.get("retired", {}))
            self.daemon_totals.clear()
            merge_totals(self.daemon_totals, totals_from_json(data.get("daemon", {})))
            self.bounded = data.get("bounded", {})
        except (ValueError, KeyError, TypeError, AttributeError, msgspec.ValidationError) as exc:
            raise CheckpointError(f"checkpoint {self.path} is unusable ({exc}); move it away to "
                                  "start over (spool files would then be exported again)") from None
        return True

    def _serialize(self) -> bytes:
        """The state file: the same bytes as `json.dumps` of the whole state with compact
        separators, each stream's entry taken from `_encoded` (made when missing)."""
        encoded = self._encoded
        entries = []
        for key, snap in self.streams.items():
            entry = encoded.get(key)
            if entry is None:
                entry = encoded[key] = _encode_stream_entry(key, snap)
            entries.append(entry)
        bounded = self.bounded_source() if self.bounded_source else self.bounded
        rest = _compact_json({"retired": totals_to_json(self.retired),
                              "daemon": totals_to_json(copy_totals(self.daemon_totals)),
                              "bounded": bounded})
        return b"".join((b'{"version":', str(STATE_VERSION).encode(), b',"streams":{',
                         b",".join(entries), b"},", rest[1:]))

    def _write(self) -> None:
        write_atomically(self.path, self._serialize())
        self.writes += 1

    def commit(self, snapshots: list[dict[str, Any]]) -> None:
        """Make these stream checkpoints durable (their spans were all exported)."""
        with self._lock:
            for snap in snapshots:
                self.streams[snap["key"]] = snap
                self._encoded.pop(snap["key"], None)
            self.commits += len(snapshots)
            self._write()

    def retire(self, key: str) -> None:
        """A stream's spool files are gone: keep its totals, forget the rest."""
        with self._lock:
            snap = self.streams.pop(key, None)
            self._encoded.pop(key, None)
            if snap is not None:
                merge_totals(self.retired, snap["ledger"])
            self._write()

    def save(self) -> None:
        with self._lock:
            self._write()
