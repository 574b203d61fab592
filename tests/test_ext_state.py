"""Extension state as span context: the envelope/sidecar timeline, policy, gauges, and a
sidecar rewritten by another process during `replay --follow`."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import scenarios as sc
from harness import make_harness
from otlp_receiver import OTLPReceiver
from prometheus_client.parser import text_string_to_metric_families

from kit_otel.model import names as n
from kit_otel.config import load_settings
from kit_otel.model.decoder import encode_event
from kit_otel.translate.ext_state import StatePolicy
from kit_otel.cli.generator import KitScript, Step, Usage, write_session_header
from kit_otel.export.pipeline import Pipeline
from kit_otel.state.state_store import StateStore
from kit_otel.translate.translator import TranslatorSettings

WARN, TOTAL = "usage-budget:warn-at-usd", "usage-budget:total-cost"


def budget_session():
    """Two turns; in the second, an extension sets a key mid-turn and deletes another."""
    s = sc.script()
    s.state["mode"] = "plan"
    s.session_start()
    s.turn("one", [Step(text="a", usage=Usage(100, 10))])
    s.turn("two", [Step(text="b", usage=Usage(100, 10))])
    # move the mid-turn change into the second turn: after its step_start
    events = s.events
    second_start = [i for i, e in enumerate(events) if e.type == "step_start"][1]
    changed = dict(events[second_start].state or s.state)
    changed.pop("mode")
    changed["phase"] = "review"
    events[second_start].state = changed
    # what the bridge sends at agent_end reflects the change too
    for e in events[second_start:]:
        if e.state is not None:
            e.state = {**{k: v for k, v in e.state.items() if k != "mode"}, "phase": "review"}
    return s


# The keys of these tests hold identifiers and numbers: their values may leave with content off.
PLAIN_VALUES = StatePolicy(value_keys=("*",))


def plain_harness():
    return make_harness(TranslatorSettings(sessions_root=None, state=PLAIN_VALUES))


def turns_in_order(h):
    return sorted(h.spans_named(n.SPAN_TURN), key=lambda sp: sp.start_time)


def test_state_changes_land_on_the_right_turn_spans():
    s = budget_session()
    h = plain_harness().feed(s.events).close()
    first, second = turns_in_order(h)
    cost_after_one = next(e for e in s.events if e.type == "agent_end").state[TOTAL]
    assert first.attributes["kit.ext_state.mode"] == "plan"
    assert first.attributes["kit.ext_state." + WARN] == "5.00"
    assert first.attributes["kit.ext_state." + TOTAL] == cost_after_one
    changes1 = [e.attributes for e in first.events if e.name == n.KIT_EXT_STATE_CHANGE]
    assert changes1 == [{"kit.ext_state.key": TOTAL, "kit.ext_state.old": "0.0000",
                         "kit.ext_state.new": cost_after_one}]
    assert "kit.ext_state.mode" not in second.attributes  # deleted during the turn
    assert second.attributes["kit.ext_state.start.mode"] == "plan"  # ... but there at its start
    assert first.attributes["kit.ext_state.start." + TOTAL] == "0.0000"
    assert "kit.ext_state.start." + WARN not in first.attributes  # unchanged: said once
    assert second.attributes["kit.ext_state.phase"] == "review"
    changes2 = [e.attributes for e in second.events if e.name == n.KIT_EXT_STATE_CHANGE]
    assert {"kit.ext_state.key": "mode", "kit.ext_state.old": "plan",
            "kit.ext_state.deleted": True} in changes2
    assert {"kit.ext_state.key": "phase", "kit.ext_state.new": "review"} in changes2
    step_start = [e for e in s.events if e.type == "step_start"][1]
    assert all(e.timestamp == step_start.ts_ns for e in second.events
               if e.name == n.KIT_EXT_STATE_CHANGE and
               e.attributes["kit.ext_state.key"] in ("mode", "phase"))


def test_sidecar_state_never_overrides_a_bridge_and_lands_inside_the_turn():
    bridged = plain_harness().feed(budget_session().events)
    assert bridged.translator.apply_external_state(sc.PATH_A, {"x": "1"}) == 0
    s = sc.simple_turn()
    events = [e for e in s.events if e.type != "agent_end"]  # a turn still open
    for e in events:
        e.state = None  # a source without the bridge
    h = plain_harness().feed(events)
    assert h.translator.apply_external_state(sc.PATH_A, {"x": "1"}) == 1
    assert h.translator.apply_external_state(sc.PATH_A, {"x": "1"}) == 0  # no change, no event
    h.close()
    turn = h.spans_named(n.SPAN_TURN)[0]
    change = [e for e in turn.events if e.name == n.KIT_EXT_STATE_CHANGE]
    assert [e.attributes["kit.ext_state.new"] for e in change] == ["1"]
    assert change[0].timestamp == events[-1].ts_ns  # at the latest event, not the wall clock
    assert turn.start_time <= change[0].timestamp <= turn.end_time


def test_policy_redacts_secrets_and_enforces_limits():
    policy = StatePolicy(deny=("internal:*",), max_value_length=5, max_keys=3,
                         value_keys=("*",))
    state = {"api-token": "abcdef", "internal:x": "1", "a": "1234567", "b": "2", "c": "3",
             "d": "4", "github_KEY": "zzz"}
    attrs = policy.attributes(state)
    assert attrs == {"kit.ext_state.a": "12345…", "kit.ext_state.api-token": "[REDACTED]",
                     "kit.ext_state.b": "2"}
    assert len(attrs) == 3
    changes = policy.changes({}, {"internal:x": "1", "github_KEY": "x"})
    assert changes == [{"kit.ext_state.key": "github_KEY", "kit.ext_state.new": "[REDACTED]"}]
    h = make_harness(TranslatorSettings(sessions_root=None, state=StatePolicy(allow=("usage-*",))))
    h.feed(budget_session().events).close()
    keys = {k.replace("start.", "", 1)[len("kit.ext_state."):] for sp in h.spans
            for k in sp.attributes if k.startswith("kit.ext_state.")}
    assert keys == {WARN, TOTAL}  # "mode" and "phase" are not allowed


def test_numeric_state_is_exported_as_gauges_on_metrics(tmp_path):
    settings = load_settings(env={}, overrides={"traces_exporter": ("none",),
                                                "metrics_exporter": ("prometheus",),
                                                "prometheus_port": 0, "output_dir": str(tmp_path)})
    pipeline = Pipeline(settings)
    s = budget_session()
    for event in s.events:
        pipeline.feed(event)
    with urllib.request.urlopen(pipeline.prometheus.url, timeout=10) as response:
        text = response.read().decode()
    pipeline.shutdown()
    values = {(smp.labels["key"], smp.labels["project"]): smp.value
              for fam in text_string_to_metric_families(text) if fam.name == "kit_ext_state_value"
              for smp in fam.samples}
    final = s.events[-1].state or next(e.state for e in reversed(s.events) if e.state)
    assert values == {(WARN, "proj"): 5.0, (TOTAL, "proj"): float(final[TOTAL])}


def test_sidecar_rewritten_by_another_process_shows_on_the_next_turn(tmp_path):
    """`replay --follow` of a live stream without a bridge's state: the sidecar is the source."""
    root = tmp_path / "sessions"
    session = root / "home--alice--proj" / "2026-11-25T10-00-00-000Z_0123456789ab.jsonl"
    write_session_header(session, "/home/alice/proj", "f" * 32, time.time_ns())
    stream = tmp_path / "live.ndjson"
    stream.write_bytes(b"")
    script = KitScript(pid=777, session_path=str(session), start_ns=time.time_ns(),
                       provider="anthropic", model="claude-haiku-4-5-20251001",
                       budget_extension=False)

    def append_turn(prompt):
        begin = len(script.events)
        script.now = max(script.now, time.time_ns())
        script.turn(prompt, [Step(text="ok", usage=Usage(10, 1))])
        with open(stream, "ab") as fh:
            for event in script.events[begin:]:
                event.state = None  # a source without the bridge: no state in envelopes
                fh.write(encode_event(event))

    with OTLPReceiver() as rx:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
        env.update(rx.env("grpc"))
        env.update({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
                    "KIT_OTEL_SESSIONS_ROOT": str(root), "KIT_OTEL_STATE_VALUE_KEYS": "*"})
        proc = subprocess.Popen([sys.executable, "-m", "kit_otel.cli.main", "replay", "--follow", "-q",
                                 str(stream)], env=env, stderr=subprocess.PIPE, text=True)
        try:
            append_turn("before")
            assert rx.wait_for(lambda: [s for s in rx.spans() if s.name == n.SPAN_TURN],
                               timeout=30)
            # another process writes the sidecar the KIT way (atomic rename) ...
            writer = subprocess.run([sys.executable, "-c",
                                     "import sys; from kit_otel.state.state_store import StateStore; "
                                     "StateStore(sys.argv[1]).set('plan:phase', 'review')",
                                     str(session)], timeout=30)
            assert writer.returncode == 0
            time.sleep(1.0)  # the follower polls every 0.2 s
            StateStore(session).set("broken-next", "x")
            time.sleep(1.0)
            sidecar = session.with_name(session.stem + ".ext-state.json")
            tmp = sidecar.with_name("bad.tmp")
            tmp.write_bytes(b"{not json")
            os.replace(tmp, sidecar)  # malformed: the last good state must stay
            time.sleep(1.0)
            append_turn("after")
            assert rx.wait_for(lambda: len([s for s in rx.spans() if s.name == n.SPAN_TURN]) == 2,
                               timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        turns = sorted((s for s in rx.spans() if s.name == n.SPAN_TURN), key=lambda s: s.start_ns)
        assert "kit.ext_state.plan:phase" not in turns[0].attributes
        assert turns[1].attributes["kit.ext_state.plan:phase"] == "review"
        assert turns[1].attributes["kit.ext_state.broken-next"] == "x"
        assert "ext-state sidecar of" in stderr and "keeping the last good state" in stderr
