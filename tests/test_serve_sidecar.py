"""`serve` follows the ext-state sidecars of live sessions: a state written by another process
(atomic rename) shows on the next turn span, for a KIT process whose events carry no state."""

import time

from otlp_receiver import OTLPReceiver
from test_serve import InProcess, settings_for

from kit_otel.model import events as ev
from kit_otel.model import names as n
from kit_otel.model.decoder import encode_event
from kit_otel.cli.generator import KitScript, Step, Usage, write_session_header
from kit_otel.state.state_store import StateStore


def test_sidecar_change_reaches_the_next_turn(tmp_path):
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"
    spool.mkdir()
    session = root / "home--bob--api" / "2026-11-25T10-00-00-000Z_abcdefabcdef.jsonl"
    write_session_header(session, "/home/bob/api", "e" * 32, time.time_ns())
    script = KitScript(pid=31337, session_path=str(session), start_ns=time.time_ns(),
                       provider="openai", model="gpt-5-mini", budget_extension=False)
    spool_file = spool / "kit-31337-20261125T100000Z-1.ndjson"
    seq = [0]

    def write(events):
        with open(spool_file, "ab") as fh:
            for event in events:
                seq[0] += 1
                event.seq, event.state = seq[0], None  # no state from the bridge here
                fh.write(encode_event(event))

    write([ev.make_event("bridge_start", time.time_ns(), pid=31337, session_path=str(session),
                         source="bridge", data=ev.BridgeStart(BridgeVersion="test"))])

    def turn(prompt):
        begin = len(script.events)
        script.now = max(script.now, time.time_ns())
        script.turn(prompt, [Step(text="ok", usage=Usage(10, 1))])
        write(script.events[begin:])

    with OTLPReceiver() as rx:
        server = InProcess(settings_for(rx, spool, state, root,
                                        state_value_keys=("review:*",)))
        try:
            turn("first")
            assert rx.wait_for(lambda: [s for s in rx.spans() if s.name == n.SPAN_TURN], 30)
            StateStore(session).set("review:status", "approved")
            time.sleep(2.5)  # serve reads the sidecars of live sessions once a second
            turn("second")
            assert rx.wait_for(
                lambda: len([s for s in rx.spans() if s.name == n.SPAN_TURN]) == 2, 30)
        finally:
            assert server.stop() == 0
        first, second = sorted((s for s in rx.spans() if s.name == n.SPAN_TURN),
                               key=lambda s: s.start_ns)
        assert "kit.ext_state.review:status" not in first.attributes
        assert second.attributes["kit.ext_state.review:status"] == "approved"
