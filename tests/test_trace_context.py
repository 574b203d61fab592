"""A KIT started with TRACEPARENT (a CI job, a wrapper script): its turns join that trace, as
children of the caller's span. The bridge puts the variables in its bridge_start header."""

from harness import make_harness

import scenarios as sc
from kit_otel.model import events as ev
from kit_otel.model import names as n
from kit_otel.model.decoder import decode_line, encode_event

CI_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CI_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CI_TRACE}-{CI_SPAN}-01"


def header(pid: int, traceparent: str, tracestate: str = "") -> ev.Event:
    return ev.Event(type="bridge_start", ts_ns=sc.T0 - 1, pid=pid, source="bridge",
                    data=ev.BridgeStart(BridgeVersion="0.1.0", Traceparent=traceparent,
                                        Tracestate=tracestate))


def two_turns():
    s = sc.simple_turn()
    s.turn("again", [sc.Step(text="ok", usage=sc.Usage(1, 1))])
    return s


def test_a_ci_jobs_traceparent_becomes_every_turns_parent():
    s = two_turns()
    line = encode_event(header(s.pid, TRACEPARENT, "ci=1"))  # as the bridge writes it
    h = make_harness().feed([decode_line(line.decode())] + s.events).close()
    turns = h.spans_named(n.SPAN_TURN)
    assert len(turns) == 2
    for turn in turns:
        assert f"{turn.context.trace_id:032x}" == CI_TRACE
        assert turn.parent is not None and turn.parent.is_remote
        assert f"{turn.parent.span_id:016x}" == CI_SPAN
        assert turn.context.trace_state.get("ci") == "1"
    # the previous-turn link stays
    second = max(turns, key=lambda t: t.start_time)
    assert second.links and second.links[0].context.span_id == \
        min(turns, key=lambda t: t.start_time).context.span_id
    # children stay in the turn's trace
    assert {sp.context.trace_id for sp in h.spans if not sp.name.startswith("kit.")} == \
        {int(CI_TRACE, 16)}


def test_other_processes_and_a_bad_traceparent_stay_root_spans():
    s = two_turns()
    h = make_harness().feed([header(s.pid + 1, TRACEPARENT)] + s.events).close()
    assert all(t.parent is None for t in h.spans_named(n.SPAN_TURN))
    h = make_harness().feed([header(s.pid, "00-not-a-trace-01")] + s.events).close()
    assert all(t.parent is None for t in h.spans_named(n.SPAN_TURN))


def test_a_new_process_with_a_reused_pid_is_not_in_the_old_ones_trace():
    """A process's first line (seq 1) says nothing of an earlier process with its pid holds:
    containers sharing a spool directory reuse small pids all the time."""
    ci = two_turns()
    first = ev.Event(type="bridge_start", ts_ns=sc.T0 - 1, pid=ci.pid, seq=1, source="bridge",
                     data=ev.BridgeStart(BridgeVersion="0.1.0", Traceparent=TRACEPARENT,
                                         Model="anthropic/claude-sonnet-4-5"))
    later = sc.simple_turn()  # the same pid, an hour later, without TRACEPARENT
    shift = 3600 * 10**9
    later_events = [ev.Event(type=e.type, data=e.data, ts_ns=e.ts_ns + shift, pid=e.pid,
                             seq=e.seq, session_path=e.session_path + ".new", source=e.source,
                             agent=e.agent) for e in later.events]
    fresh = ev.Event(type="bridge_start", ts_ns=sc.T0 + shift - 1, pid=ci.pid, seq=1,
                     source="bridge", data=ev.BridgeStart(BridgeVersion="0.1.0"))
    h = make_harness().feed([first] + ci.events + [fresh] + later_events).close()
    by_path = {}
    for turn in h.spans_named(n.SPAN_TURN):
        by_path.setdefault(turn.attributes[n.KIT_SESSION_PATH], []).append(turn)
    old, new = by_path[ci.events[0].session_path], by_path[later_events[0].session_path]
    assert all(f"{t.context.trace_id:032x}" == CI_TRACE for t in old)
    assert all(t.parent is None and f"{t.context.trace_id:032x}" != CI_TRACE for t in new)
    # a later instance of the same process (a subagent, a hot reload: seq > 1) keeps the parent
    again = ev.Event(type="bridge_start", ts_ns=sc.T0, pid=ci.pid, seq=40, source="bridge",
                     data=ev.BridgeStart(BridgeVersion="0.1.0"))
    h = make_harness().feed([first, again] + ci.events).close()
    assert all(f"{t.context.trace_id:032x}" == CI_TRACE for t in h.spans_named(n.SPAN_TURN))
