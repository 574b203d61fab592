"""The shipped Collector configs end to end on real software (issue 12).

Single node: two `kit-otel serve` → single-node.yaml → Prometheus scrapes its exporter with the
scrape config docs/deployment.md gives (honor_labels); traces → a Collector with the file
exporter standing in for Tempo.

Fleet: two `kit-otel serve` → agent.yaml → gateway.yaml → remote write into a real Prometheus
(--web.enable-remote-write-receiver); traces → tail sampling → the Tempo stand-in. The agent is
SIGKILLed right after it acknowledged every span kit-otel exported (the gateway not even up yet,
so the data is nowhere else), then restarted: nothing is lost.

Each stack is built once per module (module-scoped fixtures); the tests read from it.
"""

from __future__ import annotations

import pytest

from .collector_stack import (Collector, KitOtel, Prometheus, TraceBackend, exposition_names,
                              exposition_sum, free_port, http_text, merge, otlp_receiver_overlay,
                              shipped, telemetry_overlay, wait_for)
from ._common import require_otelcol

PROJECTS = ["payments", "kit-otel", "webapp"]  # cwd basenames of test_serve_helpers.PROJECTS


def _require_prometheus() -> None:
    import shutil
    require_otelcol()
    if not shutil.which("prometheus"):
        pytest.skip("prometheus not installed (Debian package prometheus)")


def _kit_otels(work, otlp_grpc: str) -> list[KitOtel]:
    """Two kit-otel serve processes (two hosts' worth of KIT): the first follows two KIT
    processes, the second one; three projects in all."""
    from test_serve_helpers import kit_process
    sessions = work / "sessions"
    sessions.mkdir(exist_ok=True)
    procs = [kit_process(61 + i, 8100 + i, sessions, turns=6, index=i) for i in range(3)]
    return [KitOtel("kit-otel-a", work, otlp_grpc, procs[:2], PROJECTS[:2]),
            KitOtel("kit-otel-b", work, otlp_grpc, procs[2:], PROJECTS[2:])]


def _expected_cost(kits: list[KitOtel]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for kit in kits:
        for project, cost in kit.cost_by_project().items():
            totals[project] = totals.get(project, 0.0) + cost
    return totals


def _direct_names(kits: list[KitOtel]) -> set[str]:
    return set().union(*(exposition_names(k.exposition() or "") for k in kits))


def _stop_all(*things) -> None:
    for thing in things:
        if thing is not None:
            thing.stop()


def documented_scrape_config(exporter_port: int, telemetry_port: int) -> str:
    """The scrape config of docs/deployment.md, verbatim but for the ports and a 1 s interval."""
    from ._common import DOCS_DIR
    doc = (DOCS_DIR / "deployment.md").read_text()
    block = doc.split("<!-- scrape-config:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "honor_labels: true" in block
    return (block.replace("127.0.0.1:8889", f"127.0.0.1:{exporter_port}")
                 .replace("127.0.0.1:8888", f"127.0.0.1:{telemetry_port}")
                 .replace("scrape_interval: 15s", "scrape_interval: 1s"))


# ── single node ──────────────────────────────────────────────────────────────────────────────

class SingleNode:
    pass


@pytest.fixture(scope="module")
def single_node(tmp_path_factory):
    _require_prometheus()
    work = tmp_path_factory.mktemp("single-node")
    stack = SingleNode()
    stack.tempo = stack.collector = stack.prometheus = None
    stack.kits = []
    try:
        stack.tempo = TraceBackend("tempo", work).start()
        grpc, http, prom_port, telemetry_port = free_port(), free_port(), free_port(), free_port()
        stack.collector = Collector(
            "single-node", work, [shipped("single-node.yaml")],
            merge(otlp_receiver_overlay(grpc, http), telemetry_overlay(telemetry_port),
                  {"exporters": {"prometheus": {"endpoint": f"127.0.0.1:{prom_port}"}}}),
            env={"KIT_TRACES_OTLP_ENDPOINT": stack.tempo.endpoint}).start()
        stack.prometheus = Prometheus("prometheus", work, "global:\n  scrape_interval: 1s\n"
                                      + documented_scrape_config(prom_port, telemetry_port))
        stack.kits = _kit_otels(work, f"127.0.0.1:{grpc}")
        for kit in stack.kits:
            kit.start().write_spool()
        logs = tuple(k.log for k in stack.kits) + (stack.collector.log,)
        wait_for("kit-otel caught up", lambda: all(k.caught_up() for k in stack.kits), logs=logs)
        want = sum(k.llm_calls_expected() for k in stack.kits)
        wait_for("Prometheus has every LLM call",
                 lambda: stack.prometheus.by("sum(kit_llm_calls_total)", "").get("") == want,
                 logs=logs)
        wait_for("every span in the trace backend",
                 lambda: set().union(*(k.exported_spans() for k in stack.kits))
                 <= set(stack.tempo.spans()) and stack.tempo.spans(), logs=logs)
        yield stack
    finally:
        _stop_all(*stack.kits, stack.collector, stack.prometheus, stack.tempo)


def test_single_node_cost_per_project_is_exact(single_node):
    got = single_node.prometheus.by("sum by (project) (kit_cost_usd_total)", "project")
    want = _expected_cost(single_node.kits)
    assert set(got) == set(want)
    for project, cost in want.items():
        assert got[project] == pytest.approx(cost, abs=1e-9), project


def test_single_node_keeps_each_kit_otel_apart(single_node):
    """C3: with honor_labels the exporter's job (service.name) and instance
    (service.instance.id) survive the scrape, so two kit-otel are two instances."""
    from kit_otel.export.instance_id import stable_instance_id
    series = single_node.prometheus.query("count by (job, instance) (kit_otel_events_total)")
    got = {(s["metric"]["job"], s["metric"]["instance"]) for s in series}
    assert got == {("kit-otel", stable_instance_id(k.state)) for k in single_node.kits}
    assert not single_node.prometheus.names('{__name__=~"kit_.+", exported_job!=""}')
    # the Collector's own metrics, for the KitCollector* alerts
    # (its own scrape target: Prometheus may not have scraped it yet when the kit-otel data is in)
    up = wait_for("Prometheus scrapes the Collector's own metrics",
                  lambda: single_node.prometheus.by('up{job="otelcol"}', "job"),
                  logs=(single_node.collector.log,))
    assert up == {"otelcol": 1.0}


def test_single_node_names_equal_the_direct_metrics(single_node):
    """C4: the Collector path and kit-otel's own /metrics give identical metric names."""
    direct = _direct_names(single_node.kits)
    assert {"kit_ext_state_value", "kit_cost_usd_total", "kit_budget_usd"} <= direct
    via = single_node.prometheus.names('{__name__=~"kit_.+|gen_ai_.+"}')
    assert via == {n for n in direct if n.startswith(("kit_", "gen_ai_"))}


def test_single_node_forwards_every_span(single_node):
    exported = set().union(*(k.exported_spans() for k in single_node.kits))
    assert exported and exported <= set(single_node.tempo.spans())


def test_single_node_restart_keeps_instance_and_spend(single_node):
    """R3 / R1: a restarted kit-otel continues the same instance and the same spend to date
    (restored from its checkpoint), so neither KitOtelSilent nor the budget rules see a change.
    Runs last on this stack: it restarts one of its kit-otel processes."""
    from kit_otel.export.instance_id import stable_instance_id
    kit = single_node.kits[0]
    instance = stable_instance_id(kit.state)
    query = f'sum(kit_spend_to_date_usd{{window="day", instance="{instance}"}})'
    before = single_node.prometheus.by(query, "")[""]
    assert before > 0
    kit.stop()
    kit.start()

    def spend_as_before(read):
        # (what the checkpoints restored, then what the restarted serve reads again after
        # them: polled until it is whole, and never more than before)
        value = read()
        assert value is None or value <= before + 1e-9, (value, before)
        return value if value is not None and abs(value - before) < 1e-9 else None
    direct = wait_for("the restarted kit-otel reports its spend as before", lambda: spend_as_before(
        lambda: exposition_sum(kit.exposition(), "kit_spend_to_date_usd", window="day")),
        logs=(kit.log,))
    assert direct == pytest.approx(before, abs=1e-9)
    wait_for("Prometheus has the restarted kit-otel's spend", lambda: spend_as_before(
        lambda: single_node.prometheus.by(query, "").get("")), logs=(kit.log,))
    series = single_node.prometheus.query("count by (instance) (kit_otel_events_total)")
    assert {s["metric"]["instance"] for s in series} == {stable_instance_id(k.state)
                                                          for k in single_node.kits}


# ── fleet: kit-otel → agent → gateway → remote write ─────────────────────────────────────────

class Fleet:
    pass


TAIL_COST_USD = 0.05


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    _require_prometheus()
    work = tmp_path_factory.mktemp("fleet")
    stack = Fleet()
    stack.tempo = stack.agent = stack.gateway = stack.prometheus = None
    stack.kits = []
    try:
        stack.prometheus = Prometheus("prometheus", work, "global:\n  scrape_interval: 15s\n",
                                      "--web.enable-remote-write-receiver")
        stack.tempo = TraceBackend("tempo", work).start()
        gw_grpc, gw_http, stack.gateway_telemetry = free_port(), free_port(), free_port()
        stack.gateway = Collector(
            "gateway", work, [shipped("gateway.yaml")],
            merge(otlp_receiver_overlay(gw_grpc, gw_http)),
            env={"KIT_GATEWAY_LISTEN_HOST": "127.0.0.1",
                 "KIT_GATEWAY_TELEMETRY_PORT": str(stack.gateway_telemetry),
                 "KIT_REMOTE_WRITE_URL": f"{stack.prometheus.base}/api/v1/write",
                 "KIT_TEMPO_OTLP_ENDPOINT": stack.tempo.endpoint,
                 "KIT_TAIL_DECISION_WAIT": "3s", "KIT_TAIL_SAMPLE_PERCENT": "0",
                 "KIT_TAIL_COST_USD": str(TAIL_COST_USD),
                 "KIT_TAIL_LATENCY_MS": str(10 ** 9)})
        agent_grpc, agent_http = free_port(), free_port()
        stack.agent_telemetry = free_port()
        stack.agent = Collector(
            "agent", work, [shipped("agent.yaml")],
            merge(otlp_receiver_overlay(agent_grpc, agent_http),
                  {"exporters": {
                      "loadbalancing": {"resolver": {"dns": {"hostname": "127.0.0.1",
                                                             "port": str(gw_grpc)}}},
                      "otlp/gateway": {"endpoint": f"127.0.0.1:{gw_grpc}"}}}),
            env={"KIT_AGENT_QUEUE_DIR": str(work / "agent-queue"),
                 "KIT_AGENT_TELEMETRY_PORT": str(stack.agent_telemetry)}).start()
        stack.kits = _kit_otels(work, f"127.0.0.1:{agent_grpc}")
        for kit in stack.kits:
            kit.start().write_spool()
        logs = tuple(k.log for k in stack.kits) + (stack.agent.log,)
        wait_for("kit-otel caught up", lambda: all(k.caught_up() for k in stack.kits), logs=logs)

        def accepted_everything():
            exported = sum(len(k.exported_spans()) for k in stack.kits)
            accepted = exposition_sum(
                http_text(f"http://127.0.0.1:{stack.agent_telemetry}/metrics"),
                "otelcol_receiver_accepted_spans_total")
            return exported > 0 and accepted == exported
        wait_for("the agent acknowledged every exported span", accepted_everything, logs=logs)
        stack.agent.kill()  # right after the acknowledgement; the gateway is not even up
        stack.spans = {}
        for kit in stack.kits:
            stack.spans.update(kit.exported_spans())
        stack.agent.start()
        stack.gateway.start()
        logs += (stack.gateway.log,)
        stack.kept = _traces_to_keep(stack.spans)
        want_spans = {sid for sid, s in stack.spans.items() if s["trace"] in stack.kept}
        wait_for("every kept trace in the trace backend",
                 lambda: want_spans <= set(stack.tempo.spans()), logs=logs)
        want_calls = sum(k.llm_calls_expected() for k in stack.kits)
        wait_for("remote write has every LLM call",
                 lambda: stack.prometheus.by("sum(kit_llm_calls_total)", "").get("") == want_calls,
                 logs=logs)
        yield stack
    finally:
        _stop_all(*stack.kits, stack.agent, stack.gateway, stack.tempo, stack.prometheus)


def _traces_to_keep(spans: dict[str, dict]) -> set[str]:
    """Traces the gateway's policies must keep: any span with status ERROR, or a turn span whose
    kit.turn.cost_usd is above the threshold."""
    keep = set()
    for span in spans.values():
        cost = span["attrs"].get("kit.turn.cost_usd")
        if span["error"] or (span["name"] == "invoke_agent kit" and cost is not None
                             and float(cost) > TAIL_COST_USD):
            keep.add(span["trace"])
    return keep


def test_fleet_keeps_every_error_and_expensive_turn_whole(fleet):
    stored = fleet.tempo.spans()
    assert fleet.kept, "the scenario has errors and expensive turns"
    for trace in fleet.kept:
        want = {sid for sid, s in fleet.spans.items() if s["trace"] == trace}
        got = {sid for sid, s in stored.items() if s["trace"] == trace}
        assert got == want, f"trace {trace}: {len(want - got)} of {len(want)} spans missing"


def test_fleet_samples_the_rest(fleet):
    """The sampler really ran: with KIT_TAIL_SAMPLE_PERCENT=0 cheap, healthy turns are gone."""
    traces = {s["trace"] for s in fleet.spans.values()}
    stored = {s["trace"] for s in fleet.tempo.spans().values()}
    assert traces - fleet.kept, "the scenario has cheap healthy turns"
    assert stored == fleet.kept


def test_fleet_cost_per_project_is_exact_after_an_agent_sigkill(fleet):
    got = fleet.prometheus.by("sum by (project) (kit_cost_usd_total)", "project")
    want = _expected_cost(fleet.kits)
    assert set(got) == set(want)
    for project, cost in want.items():
        assert got[project] == pytest.approx(cost, abs=1e-9), project
    tokens = fleet.prometheus.by("sum(kit_tokens_total)", "").get("")
    assert tokens == sum(sum(v for k, v in p.usage_totals().items() if k != "cost")
                         for kit in fleet.kits for p in kit.processes)


def test_fleet_names_equal_the_direct_metrics(fleet):
    direct = _direct_names(fleet.kits)
    via = fleet.prometheus.names('{__name__=~"kit_.+|gen_ai_.+"}')
    assert via == {n for n in direct if n.startswith(("kit_", "gen_ai_"))}


def test_fleet_remote_write_keeps_job_and_instance_per_kit_otel(fleet):
    from kit_otel.export.instance_id import stable_instance_id
    series = fleet.prometheus.query("count by (job, instance) (kit_otel_events_total)")
    got = {(s["metric"]["job"], s["metric"]["instance"]) for s in series}
    assert got == {("kit-otel", stable_instance_id(k.state)) for k in fleet.kits}


def test_collector_alerts_read_what_the_real_collectors_export(fleet):
    """R5: the otelcol_* names the Collector alerts query exist on the real agent and gateway."""
    import re
    from ._common import ALERTS_DIR, COLLECTOR_SERIES, load_yaml
    exported = set()
    for port in (fleet.agent_telemetry, fleet.gateway_telemetry):
        text = http_text(f"http://127.0.0.1:{port}/metrics") or ""
        exported |= set(re.findall(r"^(otelcol_\w+?)(?:\{| )", text, re.M))
    rules = [r["expr"] for g in load_yaml(ALERTS_DIR / "kit-otel-rules.yaml")["groups"]
             for r in g["rules"] if g["name"] == "kit-otel-collector-alerts"]
    patterns = {m for expr in rules for m in re.findall(r'__name__=~"([^"]+)"', expr)}
    assert patterns
    for pattern in patterns:
        # failure counters appear only once something failed: then their success sibling of the
        # same naming (sent / accepted) must be there
        sibling = (pattern.replace("enqueue_failed", "sent").replace("send_failed", "sent")
                   .replace("refused", "accepted"))
        assert any(re.fullmatch(p, name) for p in (pattern, sibling) for name in exported), \
            (pattern, sorted(exported))
    # failure counters appear once something failed; the rest is always there
    always = COLLECTOR_SERIES - {"otelcol_exporter_send_failed_metric_points_total"}
    assert always <= exported, always - exported
    assert "otelcol_exporter_sent_metric_points_total" in exported  # its sibling, same naming


def test_fleet_exemplar_links_resolve_exactly_for_kept_turns(fleet):
    """C6, as docs/dashboards.md says: exemplars are attached before sampling, so an exemplar
    resolves in the trace backend exactly when its trace was kept (errors, expensive turns)."""
    import time
    import urllib.parse
    from ._common import get_json
    now = time.time()
    body = get_json(f"{fleet.prometheus.base}/api/v1/query_exemplars?" + urllib.parse.urlencode(
        {"query": "kit_turn_cost_usd_bucket", "start": now - 3600, "end": now + 60}))
    assert body["status"] == "success", body
    traces = {ex["labels"].get("trace_id") for series in body["data"] for ex in series["exemplars"]}
    traces.discard(None)
    assert traces, "the gateway remote-writes the exemplars kit-otel attached"
    stored = {s["trace"] for s in fleet.tempo.spans().values()}
    assert traces & fleet.kept and traces - fleet.kept, "exemplars of kept and of dropped turns"
    assert {t for t in traces if t in fleet.kept} <= stored
    assert not {t for t in traces if t not in fleet.kept} & stored
