"""Static checks of collector-config/*.yaml (issue 6, part 1).

No Collector binary is available here, so these tests do what `otelcol validate` would do for
the structure (every component defined, used, of a type the contrib distribution ships) and then
check the properties this project depends on: kit-otel's default endpoint reaches the receivers,
the agent and the gateway agree on ports, metrics are never sampled nor load-balanced by trace id,
and the tail-sampling policies use kit-otel's real attribute and span names.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from ._common import COLLECTOR_DIR, load_yaml

CONFIGS = ("single-node.yaml", "agent.yaml", "gateway.yaml")
SECTIONS = ("receivers", "processors", "exporters", "extensions", "connectors")
SIGNALS = ("traces", "metrics", "logs")
# What kit-otel uses when nothing is configured: the OTel default OTLP endpoint (gRPC).
KIT_OTEL_DEFAULT_GRPC = "http://localhost:4317"
KIT_OTEL_DEFAULT_HTTP = "http://localhost:4318"

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def resolve_env(value, env: dict[str, str] | None = None):
    """Expand ${env:NAME:-default} like the Collector does (a whole-value reference keeps the
    YAML type of what it expands to)."""
    env = env or {}
    if isinstance(value, dict):
        return {k: resolve_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match):
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise AssertionError(f"${{env:{name}}} has no default: the config would not start "
                                 "without that variable")
        return default

    whole = _ENV_REF.fullmatch(value)
    expanded = _ENV_REF.sub(sub, value)
    if whole:
        yaml = pytest.importorskip("yaml")
        return yaml.safe_load(expanded) if expanded != "" else ""
    return expanded


@pytest.fixture(scope="module")
def components():
    return json.loads((COLLECTOR_DIR / "components.json").read_text())


@pytest.fixture(scope="module", params=CONFIGS)
def raw_config(request):
    return request.param, load_yaml(COLLECTOR_DIR / request.param)


def load(name: str) -> dict:
    return resolve_env(load_yaml(COLLECTOR_DIR / name))


def ctype(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def pipelines(cfg) -> dict:
    return cfg["service"]["pipelines"]


def host_port(endpoint: str) -> tuple[str, int]:
    if "://" not in endpoint:
        endpoint = "//" + endpoint
    parts = urlsplit(endpoint)
    return parts.hostname, parts.port


# ── structure ────────────────────────────────────────────────────────────────────────────────

def test_components_list_names_the_checked_distribution(components):
    assert components["distribution"] == "otelcol-contrib"
    assert re.fullmatch(r"\d+\.\d+\.\d+", components["version"])
    for section in SECTIONS:
        for ctype_name, module in components["components"][section].items():
            assert re.fullmatch(r"[a-z_]+", ctype_name)
            assert ctype_name.replace("_", "") in module.rsplit("/", 1)[-1], (ctype_name, module)


def test_yaml_parses_with_expected_top_level(raw_config):
    name, cfg = raw_config
    assert isinstance(cfg, dict), name
    assert set(cfg) <= set(SECTIONS) | {"service"}, f"{name}: unknown top-level keys {set(cfg)}"
    assert "service" in cfg and "pipelines" in cfg["service"]


def test_every_env_reference_has_a_default(raw_config):
    name, cfg = raw_config
    resolve_env(cfg)  # raises on ${env:X} without :-default
    text = (COLLECTOR_DIR / name).read_text()
    # The Collector only expands the ${env:...} form; a bare $VAR or ${VAR} is a typo here.
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        assert not re.search(r"\$(?!\{env:)", code), f"{name}: non-env substitution in {line!r}"


def test_component_types_exist_in_contrib(raw_config, components):
    name, cfg = raw_config
    for section in SECTIONS:
        for cid in cfg.get(section) or {}:
            assert re.fullmatch(r"[a-z_]+(/[A-Za-z0-9_.-]+)?", cid), f"{name}: bad id {cid}"
            assert ctype(cid) in components["components"][section], (
                f"{name}: {section[:-1]} type {ctype(cid)!r} is not in components.json "
                f"(otelcol-contrib {components['version']})")


def test_every_referenced_component_is_defined(raw_config):
    name, cfg = raw_config
    for pname, pipe in pipelines(cfg).items():
        assert ctype(pname) in SIGNALS, f"{name}: pipeline {pname}"
        assert pipe.get("receivers") and pipe.get("exporters"), f"{name}: {pname} incomplete"
        for key in ("receivers", "processors", "exporters"):
            for cid in pipe.get(key) or []:
                defined = set(cfg.get(key) or {}) | set(cfg.get("connectors") or {})
                assert cid in defined, f"{name}: pipeline {pname} uses undefined {key[:-1]} {cid}"
            assert len(pipe.get(key) or []) == len(set(pipe.get(key) or [])), f"{name}: duplicate in {pname}.{key}"
    for ext in cfg["service"].get("extensions") or []:
        assert ext in (cfg.get("extensions") or {}), f"{name}: service uses undefined extension {ext}"


def test_every_defined_component_is_used(raw_config):
    name, cfg = raw_config
    used = {key: set() for key in ("receivers", "processors", "exporters")}
    for pipe in pipelines(cfg).values():
        for key in used:
            used[key] |= set(pipe.get(key) or [])
    for key in used:
        unused = set(cfg.get(key) or {}) - used[key]
        assert not unused, f"{name}: defined but unused {key}: {sorted(unused)}"
    ext_unused = set(cfg.get("extensions") or {}) - set(cfg["service"].get("extensions") or [])
    assert not ext_unused, f"{name}: extensions not enabled in service: {sorted(ext_unused)}"
    for conn in cfg.get("connectors") or {}:
        assert conn in used["exporters"] and conn in used["receivers"], f"{name}: connector {conn}"


def test_memory_limiter_first_and_batch_last(raw_config):
    name, cfg = raw_config
    for pname, pipe in pipelines(cfg).items():
        procs = pipe.get("processors") or []
        assert procs and ctype(procs[0]) == "memory_limiter", f"{name}: {pname} must start with memory_limiter"
        batches = [i for i, p in enumerate(procs) if ctype(p) == "batch"]
        assert batches in ([], [len(procs) - 1]), f"{name}: {pname}: batch, if any, comes last"


def test_agent_acknowledges_only_what_its_disk_queue_holds():
    """C2: a batch processor answers kit-otel before the persistent queue holds the data, so an
    agent killed inside its timeout loses spans kit-otel already counted as delivered. The agent
    batches inside each exporter's persistent sending_queue instead."""
    agent = load("agent.yaml")
    for pname, pipe in pipelines(agent).items():
        assert not any(ctype(p) == "batch" for p in pipe.get("processors") or []), pname
        for eid in pipe["exporters"]:
            queue = agent["exporters"][eid]["sending_queue"]
            assert queue["enabled"] is True and queue["storage"], eid
            assert queue["batch"]["sizer"] in ("items", "bytes"), eid


# ── value types, as the Collector decodes them (no weak typing) ──────────────────────────────

_DURATION_KEYS = re.compile(r"(timeout|interval|decision_wait|max_stale|max_elapsed_time)$")
_BOOL_KEYS = frozenset({"insecure", "enabled", "create_directory", "on_start", "on_rebound",
                        "override", "enable_open_metrics"})
_INT_KEYS = re.compile(r"(_size|_percentage|queue_size|num_consumers|threshold_ms|num_traces|"
                       r"expected_new_traces_per_sec|sampled_cache_size|min_size|max_size)$")


def type_errors(value, path: tuple = ()) -> list[str]:
    """Where a resolved config holds a value of a type the Collector would refuse: strings for
    endpoints, hostnames and the loadbalancing resolver's port, durations as Go duration strings,
    booleans and integers where the component declares them."""
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in type_errors(v, path + (str(k),))]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in type_errors(v, path + (str(i),))]
    key, where = (path[-1] if path else ""), ".".join(path)
    in_resolver = "resolver" in path
    if key in ("endpoint", "hostname", "directory", "storage") or (key == "port" and in_resolver):
        ok = isinstance(value, str)
    elif key == "port":  # service::telemetry readers
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif key == "sampling_percentage":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif _DURATION_KEYS.search(key):
        ok = isinstance(value, str) and re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", value) is not None
    elif key in _BOOL_KEYS:
        ok = isinstance(value, bool)
    elif _INT_KEYS.search(key):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        return []
    return [] if ok else [f"{where}: {value!r} ({type(value).__name__})"]


def test_values_have_the_types_the_collector_decodes(raw_config):
    name, cfg = raw_config
    assert type_errors(resolve_env(cfg)) == [], name


def test_type_check_refuses_what_the_collector_refuses():
    # C1: `port: 4317` under resolver.dns stopped the agent from starting
    bad = {"exporters": {"loadbalancing": {"resolver": {"dns": {"hostname": "gw", "port": 4317}}},
                         "otlp": {"timeout": 10, "tls": {"insecure": "yes"}}},
           "service": {"telemetry": {"metrics": {"readers": [{"pull": {"exporter": {
               "prometheus": {"host": "127.0.0.1", "port": "8888"}}}}]}}}}
    errors = type_errors(bad)
    assert len(errors) == 4, errors
    assert any("resolver.dns.port: 4317" in e for e in errors)


def _listeners(cfg) -> list[tuple[str, str, int]]:
    """(what, host, port) of every socket a config listens on."""
    out = []
    for cid, receiver in (cfg.get("receivers") or {}).items():
        for proto, spec in ((receiver or {}).get("protocols") or {}).items():
            out.append((f"{cid}.{proto}", *host_port(spec["endpoint"])))
    for cid, ext in (cfg.get("extensions") or {}).items():
        if ext and "endpoint" in ext:
            out.append((cid, *host_port(ext["endpoint"])))
    for cid, exp in (cfg.get("exporters") or {}).items():
        if ctype(cid) == "prometheus":
            out.append((cid, *host_port(exp["endpoint"])))
    for reader in cfg["service"].get("telemetry", {}).get("metrics", {}).get("readers") or []:
        prom = reader.get("pull", {}).get("exporter", {}).get("prometheus")
        if prom:
            out.append(("telemetry", prom["host"], int(prom["port"])))
    return out


def test_every_gateway_listener_follows_its_listen_host():
    """C9: next to an agent (which holds the loopback ports), a gateway on the host's own address
    must not bind anything else: its own metrics were fixed to 0.0.0.0:8888."""
    env = {"KIT_GATEWAY_LISTEN_HOST": "10.1.2.3"}
    gateway = resolve_env(load_yaml(COLLECTOR_DIR / "gateway.yaml"), env)
    listeners = _listeners(gateway)
    assert {"otlp.grpc", "health_check", "telemetry"} <= {what for what, _, _ in listeners}
    assert {host for _, host, _ in listeners} == {"10.1.2.3"}, listeners
    agent = _listeners(load("agent.yaml"))
    taken = {(host, port) for _, host, port in agent}
    for what, host, port in listeners:
        assert (host, port) not in taken and ("0.0.0.0", port) not in taken, what
    assert {host for _, host, _ in agent} == {"127.0.0.1"}, agent


def test_queue_storage_references_enabled_file_storage(raw_config):
    name, cfg = raw_config
    enabled = set(cfg["service"].get("extensions") or [])
    for eid, exp in (cfg.get("exporters") or {}).items():
        storage = ((exp or {}).get("sending_queue") or {}).get("storage")
        if storage:
            assert ctype(storage) == "file_storage", f"{name}: {eid} queue storage {storage}"
            assert storage in enabled, f"{name}: {eid} queue storage {storage} not enabled"


def test_no_metrics_pipeline_samples_or_balances_by_trace(raw_config):
    name, cfg = raw_config
    for pname, pipe in pipelines(cfg).items():
        if ctype(pname) != "metrics":
            continue
        for proc in pipe.get("processors") or []:
            assert ctype(proc) not in ("tail_sampling", "probabilistic_sampler", "filter"), (
                f"{name}: metrics pipeline {pname} must not drop or sample data ({proc})")
        for exp in pipe["exporters"]:
            assert ctype(exp) != "loadbalancing", f"{name}: loadbalancing exporter in {pname}"


# ── kit-otel → Collector ─────────────────────────────────────────────────────────────────────

def _otlp_receiver(cfg):
    receivers = {cid: r for cid, r in cfg["receivers"].items() if ctype(cid) == "otlp"}
    assert len(receivers) == 1
    return next(iter(receivers.values()))


@pytest.mark.parametrize("name", ["single-node.yaml", "agent.yaml"])
def test_kit_otel_default_endpoint_reaches_receiver(name):
    cfg = load(name)
    protocols = _otlp_receiver(cfg)["protocols"]
    for proto, default in (("grpc", KIT_OTEL_DEFAULT_GRPC), ("http", KIT_OTEL_DEFAULT_HTTP)):
        host, port = host_port(protocols[proto]["endpoint"])
        want_host, want_port = host_port(default)
        assert port == want_port, f"{name}: {proto} receiver on {port}, kit-otel sends to {want_port}"
        assert host in ("localhost", "127.0.0.1", "0.0.0.0", "::", ""), (
            f"{name}: {proto} receiver bound to {host}, unreachable from localhost")
    # every receiver pipeline accepts what kit-otel sends: traces and metrics
    fed = {ctype(p) for p, pipe in pipelines(cfg).items() if "otlp" in pipe["receivers"]}
    assert {"traces", "metrics"} <= fed


def test_kit_otel_default_endpoint_constant_matches_the_package():
    config = pytest.importorskip("kit_otel.config")
    settings = config.Settings()
    # the spec's default protocol, http/protobuf, and its port
    assert settings.effective_otlp_endpoint() == KIT_OTEL_DEFAULT_HTTP


def test_agent_listens_on_loopback_only():
    cfg = load("agent.yaml")
    for proto in _otlp_receiver(cfg)["protocols"].values():
        host, _ = host_port(proto["endpoint"])
        assert host in ("127.0.0.1", "localhost", "::1")


# ── agent ↔ gateway ──────────────────────────────────────────────────────────────────────────

def test_agent_sends_traces_by_trace_id_and_metrics_directly():
    agent = load("agent.yaml")
    pipes = pipelines(agent)
    traces = [p for n, p in pipes.items() if ctype(n) == "traces"]
    metrics = [p for n, p in pipes.items() if ctype(n) == "metrics"]
    assert traces and metrics
    for pipe in traces:
        assert [ctype(e) for e in pipe["exporters"]] == ["loadbalancing"]
        lb = agent["exporters"][pipe["exporters"][0]]
        assert lb.get("routing_key", "traceID") == "traceID"
    for pipe in metrics:
        assert all(ctype(e) in ("otlp", "otlphttp") for e in pipe["exporters"])


def test_agent_and_gateway_agree_on_ports_and_host():
    agent, gateway = load("agent.yaml"), load("gateway.yaml")
    gw_grpc_host, gw_grpc_port = host_port(_otlp_receiver(gateway)["protocols"]["grpc"]["endpoint"])
    assert gw_grpc_host in ("0.0.0.0", "::", ""), "gateway must accept agents from other hosts"
    lb = agent["exporters"]["loadbalancing"]
    resolver = lb["resolver"]
    assert len(resolver) == 1
    kind, spec = next(iter(resolver.items()))
    if kind == "dns":
        lb_hosts = {(spec["hostname"], int(spec.get("port", 4317)))}
    elif kind == "static":
        lb_hosts = {host_port(h) for h in spec["hostnames"]}
    else:  # k8s
        lb_hosts = {(spec["service"], int(p)) for p in spec.get("ports", [4317])}
    assert {port for _, port in lb_hosts} == {gw_grpc_port}
    metric_exporters = [e for n, p in pipelines(agent).items() if ctype(n) == "metrics" for e in p["exporters"]]
    for eid in metric_exporters:
        host, port = host_port(agent["exporters"][eid]["endpoint"])
        assert port == gw_grpc_port, f"{eid} dials {port}, gateway listens on {gw_grpc_port}"
        assert host in {h for h, _ in lb_hosts}, f"{eid} dials {host}, traces go to {lb_hosts}"
    # the per-host hop is durable: every agent exporter has a persistent queue
    for eid, exp in agent["exporters"].items():
        queue = exp.get("sending_queue") or {}
        assert queue.get("enabled", True) and queue.get("storage"), f"agent {eid} needs a persistent queue"


def test_delta_to_cumulative_before_remote_write():
    for name in ("agent.yaml", "gateway.yaml"):
        cfg = load(name)
        for pname, pipe in pipelines(cfg).items():
            if ctype(pname) != "metrics":
                continue
            assert "deltatocumulative" in pipe["processors"], f"{name}: {pname}"
            if any(ctype(e) == "prometheusremotewrite" for e in pipe["exporters"]):
                assert pipe["processors"].index("deltatocumulative") < pipe["processors"].index("batch")
    gateway = load("gateway.yaml")
    prw = [e for e in gateway["exporters"] if ctype(e) == "prometheusremotewrite"]
    assert prw, "gateway must remote-write metrics to Mimir/Thanos"
    assert urlsplit(gateway["exporters"][prw[0]]["endpoint"]).scheme in ("http", "https")


# ── tail sampling ────────────────────────────────────────────────────────────────────────────

def _tail_sampling(gateway):
    procs = [p for p in gateway["processors"] if ctype(p) == "tail_sampling"]
    assert len(procs) == 1
    return procs[0], gateway["processors"][procs[0]]


def _duration_s(text) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text))
    assert match, text
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def test_tail_sampling_only_in_gateway_traces_pipeline():
    gateway = load("gateway.yaml")
    pid, _ = _tail_sampling(gateway)
    holders = [n for n, p in pipelines(gateway).items() if pid in (p.get("processors") or [])]
    assert holders and all(ctype(n) == "traces" for n in holders)
    for name in ("single-node.yaml", "agent.yaml"):
        cfg = load(name)
        assert not any(ctype(p) == "tail_sampling" for p in cfg.get("processors") or {})


def test_tail_sampling_policies_use_kit_names():
    gateway = load("gateway.yaml")
    _, ts = _tail_sampling(gateway)
    policies = {p["type"]: p for p in ts["policies"]}
    assert len({p["name"] for p in ts["policies"]}) == len(ts["policies"])
    # 1. every error: span status ERROR
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    # 2. expensive turns: the turn span's kit.turn.cost_usd (a double → OTTL, not numeric_attribute)
    conditions = policies["ottl_condition"]["ottl_condition"]["span"]
    cost = [c for c in conditions if "kit.turn.cost_usd" in c]
    assert cost, conditions
    match = re.fullmatch(r'name == "invoke_agent kit" and attributes\["kit\.turn\.cost_usd"\] > (\d+(?:\.\d+)?)',
                         cost[0])
    assert match, cost[0]
    assert 0 < float(match.group(1)) < 100
    assert not any(p["type"] == "numeric_attribute" and p["numeric_attribute"]["key"] == "kit.turn.cost_usd"
                   for p in ts["policies"]), "numeric_attribute reads doubles as 0"
    # 3. slow turns; 4. a share of the rest
    latency_ms = policies["latency"]["latency"]["threshold_ms"]
    assert isinstance(latency_ms, int) and latency_ms > 0
    pct = policies["probabilistic"]["probabilistic"]["sampling_percentage"]
    assert 0 < pct < 100
    # the decision must wait for the turn span, which ends last: at least the latency threshold
    assert _duration_s(ts["decision_wait"]) * 1000 >= latency_ms
    assert ts["decision_cache"]["sampled_cache_size"] > 0


def test_span_and_attribute_names_match_the_package():
    names = pytest.importorskip("kit_otel.model.names")
    assert names.SPAN_TURN == "invoke_agent kit"
    assert names.KIT_TURN_COST_USD == "kit.turn.cost_usd"


def test_single_node_has_prometheus_traces_and_switchable_debug():
    cfg = load("single-node.yaml")
    exporters = {ctype(e) for e in cfg["exporters"]}
    assert {"prometheus", "otlp", "debug"} <= exporters
    assert cfg["exporters"]["debug"]["verbosity"] in ("basic", "normal", "detailed")
    raw = load_yaml(COLLECTOR_DIR / "single-node.yaml")
    assert "${env:" in raw["exporters"]["debug"]["verbosity"], "debug verbosity must be switchable"
    env = {"KIT_COLLECTOR_DEBUG_VERBOSITY": "detailed"}
    assert resolve_env(raw, env)["exporters"]["debug"]["verbosity"] == "detailed"
    host, port = host_port(cfg["exporters"]["prometheus"]["endpoint"])
    assert port == 8889


def test_resolve_env_rejects_missing_defaults():
    with pytest.raises(AssertionError):
        resolve_env({"a": "${env:NOPE_NOT_SET}"})
    assert resolve_env({"a": "${env:X:-4317}"}) == {"a": 4317}
    assert resolve_env({"a": "h:${env:X:-1}"}, {"X": "2"}) == {"a": "h:2"}


def test_every_env_variable_is_documented_with_its_default(raw_config):
    """Each ${env:NAME:-default} appears in the file's header comment with the same default."""
    name, _ = raw_config
    text = (COLLECTOR_DIR / name).read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    refs = {(m.group(1), m.group(2)) for m in _ENV_REF.finditer(text) if not text[:m.start()].rsplit("\n", 1)[-1].lstrip().startswith("#")}
    assert refs, name
    for var, default in refs:
        documented = [c for c in comments if re.search(rf"\b{var}\b", c)]
        assert documented, f"{name}: {var} is not documented in the header"
        assert any(default in c for c in documented), f"{name}: {var} default {default!r} not documented"


def test_deployment_doc_covers_the_topology():
    from ._common import DOCS_DIR
    doc = (DOCS_DIR / "deployment.md").read_text()
    for needle in ("single-node.yaml", "agent.yaml", "gateway.yaml", "loadbalancing", "traceID",
                   "tail_sampling", "kit.turn.cost_usd", "deltatocumulative", "prometheusremotewrite",
                   "file_storage", "kit_budget_usd", "http://localhost:4317"):
        assert needle in doc, needle
    # the knobs an operator turns most
    for var in ("KIT_GATEWAY_HOST", "KIT_TAIL_COST_USD", "KIT_TAIL_LATENCY_MS", "KIT_TAIL_SAMPLE_PERCENT",
                "KIT_TAIL_DECISION_WAIT", "KIT_REMOTE_WRITE_URL", "KIT_TEMPO_OTLP_ENDPOINT",
                "KIT_AGENT_QUEUE_DIR", "KIT_COLLECTOR_DEBUG_VERBOSITY", "KIT_TRACES_OTLP_ENDPOINT"):
        assert var in doc, var
        assert any(var in (COLLECTOR_DIR / cfg).read_text() for cfg in CONFIGS), f"{var} documented but unused"
