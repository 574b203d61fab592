"""The translator state a checkpoint carries, as an explicit, versioned schema.

A checkpoint is taken only with no open turn in a KIT process's sessions, so what continues a
stream after a restart is session-level: who the session is, its model, the previous turn's span
context (the next turn links to it), whether a session_start was seen (a later one is a hot
reload) and its extension state. Each field is listed here on purpose: adding a field to the
in-memory `Session` does not change the on-disk format until it is added below with a new
`SESSION_SCHEMA`, and `from_checkpoint` says which schemas it reads.
"""

from __future__ import annotations

import msgspec
from opentelemetry.trace import SpanContext, TraceFlags

from kit_otel.translate.span_state import Session

# 1: every field of the in-memory session, as written before the schema was explicit (it also
#    carried `base_attributes`, which are now rebuilt on restore); 2: the fields below.
SESSION_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)


class TurnLink(msgspec.Struct, frozen=True):
    """The span context of a session's previous turn (hex ids, W3C trace flags)."""

    trace_id: str
    span_id: str
    flags: int = 1

    @classmethod
    def of(cls, context: SpanContext) -> TurnLink:
        return cls(f"{context.trace_id:032x}", f"{context.span_id:016x}", int(context.trace_flags))

    def span_context(self) -> SpanContext:
        return SpanContext(int(self.trace_id, 16), int(self.span_id, 16), is_remote=False,
                           trace_flags=TraceFlags(self.flags))


class SessionSnapshot(msgspec.Struct, frozen=True):
    pid: int
    path: str
    session_id: str
    project: str
    cwd: str = ""
    provider: str = ""
    model: str = ""
    previous_turn: TurnLink | None = None
    started: bool = False
    counted: bool = False
    shut_down: bool = False
    state: dict[str, str] = {}
    state_ts_ns: int = 0
    last_ns: int = 0
    clock_ns: int = 0

    @classmethod
    def of(cls, session: Session) -> SessionSnapshot:
        previous = session.previous_turn
        return cls(pid=session.pid, path=session.path, session_id=session.session_id,
                   project=session.project, cwd=session.cwd, provider=session.provider,
                   model=session.model,
                   previous_turn=TurnLink.of(previous) if previous is not None else None,
                   started=session.started, counted=session.counted, shut_down=session.shut_down,
                   state=dict(session.state), state_ts_ns=session.state_ts_ns,
                   last_ns=session.last_ns, clock_ns=session.clock_ns)

    def to_checkpoint(self) -> dict:
        return msgspec.to_builtins(self)

    @classmethod
    def from_checkpoint(cls, data: object, schema: int) -> SessionSnapshot:
        """A snapshot written with `schema`; ValueError names the field that is wrong."""
        if schema not in READABLE_SCHEMAS:
            raise ValueError(f"session schema {schema!r} is not one of {READABLE_SCHEMAS} "
                             "(written by a newer kit-otel?)")
        try:
            # schema 1 wrote extra fields (base_attributes, turn): ignored, they are rebuilt
            return msgspec.convert(data, cls, strict=True)
        except msgspec.ValidationError as exc:
            raise ValueError(f"session record: {exc}") from None

    def session(self, base_attributes: dict[str, object]) -> Session:
        return Session(pid=self.pid, path=self.path, session_id=self.session_id,
                       project=self.project, base_attributes=base_attributes, cwd=self.cwd,
                       provider=self.provider, model=self.model,
                       previous_turn=self.previous_turn.span_context()
                       if self.previous_turn is not None else None,
                       started=self.started, counted=self.counted, shut_down=self.shut_down,
                       state=dict(self.state), state_ts_ns=self.state_ts_ns,
                       last_ns=self.last_ns, clock_ns=self.clock_ns)
