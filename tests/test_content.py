"""Content off means off, and captured content is redacted: canaries in every free-text field of
every event type (tests/canaries.py), through the translator, a real `serve` to the test OTLP
receiver, and `replay` to OTLP-JSON files; every secret format redaction must catch, and
ordinary text it must leave alone."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from canaries import (CANARY, IDENTIFIER_MARK, ORDINARY, SECRETS, canary_session, secrets_text,
                      spool_file)
from harness import make_harness
from otlp_receiver import OTLPReceiver
from test_serve_helpers import ServeProcess, serve_env

from kit_otel.model import events as ev
from kit_otel.model import names as n
from kit_otel.config import Settings
from kit_otel.translate.content import IDENTIFIER_FIELDS, REDACTED, ContentPolicy
from kit_otel.model.decoder import DecodeFailure, decode_line
from kit_otel.translate.ext_state import NOT_CAPTURED, StatePolicy
from kit_otel.export.pipeline import PrometheusEndpoint, reachable_from_other_machines
from kit_otel.state.state_store import sidecar_path
from kit_otel.translate.translator import TranslatorSettings

_CANARY_RE = re.compile(CANARY + r"[0-9A-Za-z\-]*")
CAPTURE_ON = {"KIT_OTEL_CAPTURE_CONTENT": "true", "KIT_OTEL_CONTENT_MAX_LENGTH": "1000000",
              "KIT_OTEL_STATE_MAX_VALUE_LENGTH": "1000000"}
# Places whose text a captured run must show (the canary before the redacted secrets).
CAPTURED_PLACES = {"input.Text", "agent_end.Response", "tool_call.Input", "tool_result.Content",
                   "subagent_start.Task", "error.Error", "subagent_end.ErrorMsg",
                   "ext-state plan:note", "future_event.Body", "source.URL", "source.Title",
                   "warnings.Warnings[]"}


def canaries_in(text: str) -> set[str]:
    return set(_CANARY_RE.findall(text))


def assert_nothing_leaked(text: str, places: dict[str, str]) -> None:
    leaked = canaries_in(text)
    assert not leaked, "free text left with content off: " + ", ".join(
        sorted({places.get(c, c) for c in leaked}))
    assert IDENTIFIER_MARK in text  # identifiers did arrive: the scan looked at the output


def assert_captured_and_redacted(text: str, places: dict[str, str]) -> None:
    shown = {places[c] for c in canaries_in(text) if c in places}
    assert CAPTURED_PLACES <= shown, f"not captured: {sorted(CAPTURED_PLACES - shown)}"
    passed = [name for name, _, core in SECRETS if core in text]
    assert not passed, f"secrets not redacted: {passed}"
    assert REDACTED in text
    mangled = [snippet for snippet in ORDINARY if snippet not in text]
    assert not mangled, f"ordinary text changed by redaction: {mangled}"


def _in_memory_output(h) -> str:
    data = h.reader.get_metrics_data()
    return "\n".join([s.to_json() for s in h.spans] + [data.to_json() if data else ""])


# ── the secrets and the text around them ──────────────────────────────────────────────────────

@pytest.mark.parametrize("name,text,core", SECRETS, ids=[s[0] for s in SECRETS])
def test_each_secret_format_is_redacted(name, text, core):
    policy = ContentPolicy(capture=True)
    for context in (text, f"see {text} above", json.dumps({"command": f"echo {text}"})):
        redacted = policy.redact_text(context)
        assert core not in redacted and REDACTED in redacted, redacted


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_code_and_prose_is_not_redacted(text):
    assert ContentPolicy(capture=True).redact_text(text) == text


def test_redaction_keeps_the_key_and_hides_the_value():
    policy = ContentPolicy(capture=True)
    assert policy.redact_text("postgres://app:Pg5ecretZ@db:5432/x") == \
        f"postgres://app:{REDACTED}@db:5432/x"
    assert policy.redact_text('password = "plum cart"') == f'password = "{REDACTED}"'
    assert policy.redact_text("Server=db;Pwd=Vk8s;Uid=sa") == f"Server=db;Pwd={REDACTED};Uid=sa"
    assert policy.redact_text("Authorization: Basic YWxpY2U6cHc=") == \
        f"Authorization: Basic {REDACTED}"


def test_identifier_fields_name_string_fields_of_the_event_model():
    for cls, names in IDENTIFIER_FIELDS.items():
        fields = {f.name: f.type for f in msgspec.inspect.type_info(cls).fields}
        for name in names:
            assert name in fields, f"{cls.__name__}.{name} is not a field"
            texts = (fields[name],) + getattr(fields[name], "types", ())
            assert any(isinstance(t, (msgspec.inspect.StrType, msgspec.inspect.ListType))
                       for t in texts), f"{cls.__name__}.{name} holds no string"


# ── ext-state values ──────────────────────────────────────────────────────────────────────────

def test_ext_state_values_are_free_text():
    off = StatePolicy(value_keys=("mode",), gauge_keys=("budget:usd",))
    state = {"mode": "plan", "note": "call Bob at 555-0100", "budget:usd": "5.00",
             "api_token": "x"}
    assert off.attributes(state) == {
        "kit.ext_state.mode": "plan", "kit.ext_state.note": NOT_CAPTURED,
        "kit.ext_state.budget:usd": "5.00", "kit.ext_state.api_token": REDACTED}
    on = StatePolicy(content=ContentPolicy(capture=True))
    assert on.value("note", "db is postgres://app:Pg5ecretZ@db/x") == \
        f"db is postgres://app:{REDACTED}@db/x"
    assert on.value("mode", "plan") == "plan"
    # the translator's ext-state follows its content setting
    settings = TranslatorSettings(content=ContentPolicy(capture=True))
    assert settings.state.value("note", "hello") == "hello"
    assert TranslatorSettings().state.value("note", "hello") == NOT_CAPTURED


# ── logs and settings ─────────────────────────────────────────────────────────────────────────

def test_a_bad_timestamp_is_described_not_quoted():
    with pytest.raises(DecodeFailure) as failure:
        decode_line(b'{"v":1,"ts":"' + CANARY.encode() + b' sk-ant-api03-Zz9Yy8Xx7Ww6Vv5",'
                    b'"type":"input"}', source="f.ndjson", lineno=3)
    message = str(failure.value)
    assert message.startswith("f.ndjson:3: ts: not an RFC 3339 timestamp")
    assert CANARY not in message and "Zz9Yy8" not in message
    with pytest.raises(DecodeFailure) as failure:
        decode_line(b'{"v":1,"ts":"2026-13-01T00:00:00Z","type":"input"}')
    assert "'9999-99-99T99:99:99Z'" in str(failure.value)  # its shape still helps


def test_a_prometheus_host_beyond_loopback_is_warned_about(caplog):
    assert not reachable_from_other_machines("127.0.0.1")
    assert not reachable_from_other_machines("localhost")
    assert not reachable_from_other_machines("::1")
    assert reachable_from_other_machines("0.0.0.0")
    assert reachable_from_other_machines("")
    assert reachable_from_other_machines("192.0.2.7")
    with caplog.at_level(logging.WARNING, logger="kit_otel"):
        PrometheusEndpoint("127.0.0.1", 0).close()
        assert not caplog.records
        # TEST-NET-1: not an address of this machine, so nothing listens beyond loopback
        with pytest.raises(OSError):
            PrometheusEndpoint("192.0.2.7", 0)
    assert [r.getMessage() for r in caplog.records if "prometheus_host=192.0.2.7" in
            r.getMessage() and "127.0.0.1" in r.getMessage()]
    assert Settings().prometheus_host == "127.0.0.1"


# ── the translator ────────────────────────────────────────────────────────────────────────────

def test_content_off_leaves_no_free_text_in_spans_metrics_or_logs(tmp_path, caplog):
    events, canary = canary_session(tmp_path / "sessions")
    assert {e.type for e in events} >= ev.KIT_EVENT_TYPES
    with caplog.at_level(logging.DEBUG, logger="kit_otel"):
        h = make_harness(TranslatorSettings(sessions_root=str(tmp_path / "sessions")))
        h.feed(events)
        h.translator.apply_external_state(events[0].session_path, {"note": canary("sidecar")})
        h.close()
    output = _in_memory_output(h)
    assert_nothing_leaked(output + "\n".join(r.getMessage() for r in caplog.records),
                          canary.places)
    # what stays: lengths, counts and the kind of each error
    turn = h.spans_named(n.SPAN_TURN)[0]
    assert turn.attributes[n.KIT_TURN_PROMPT_LENGTH] > 0
    assert any(sp.status.description in ("other", "network", "rate_limit", "overloaded")
               for sp in h.spans if sp.status.description)
    assert '"kit.ext_state.plan:note": "[not captured]"' in output


def test_content_on_is_redacted_everywhere_it_leaves(tmp_path):
    events, canary = canary_session(tmp_path / "sessions",
                                    payload=" | ".join(ORDINARY) + " | " + secrets_text())
    content = ContentPolicy(capture=True, max_length=1 << 20)
    h = make_harness(TranslatorSettings(sessions_root=str(tmp_path / "sessions"), content=content,
                                        state=StatePolicy(max_value_length=1 << 20)))
    h.feed(events).close()
    strings = "\n".join(_strings(json.loads(s.to_json())) for s in h.spans)
    assert_captured_and_redacted(strings, canary.places)


def _strings(value) -> str:
    """Every string (keys too) in decoded JSON, one per line: escapes undone."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(f"{k}\n{_strings(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_strings(v) for v in value)
    return ""


# ── end to end ────────────────────────────────────────────────────────────────────────────────

def _session_files(tmp_path: Path, capture: bool):
    payload = " | ".join(ORDINARY) + " | " + secrets_text() if capture else ""
    root = tmp_path / "sessions"
    events, canary = canary_session(root, payload=payload)
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    path = spool_file(spool, events)
    Path(sidecar_path(events[0].session_path)).write_text(json.dumps({"note": canary("sidecar")}))
    return root, spool, path, events, canary


@pytest.mark.parametrize("capture", [False, True], ids=["content-off", "content-on"])
def test_serve_to_otlp(tmp_path, capture):
    root, spool, _, events, canary = _session_files(tmp_path, capture)
    reference = make_harness(TranslatorSettings(sessions_root=str(root), idle_timeout_s=86400))
    expected = len(reference.feed(events).spans)
    with OTLPReceiver() as rx:
        env = serve_env(rx, spool, tmp_path / "state", root, **(CAPTURE_ON if capture else {}))
        server = ServeProcess(env)
        try:
            server.wait_ready()
            rx.wait_for(lambda: len({s.id for s in rx.spans()}) >= expected, timeout=120,
                        message=f"fewer than {expected} spans arrived:\n{server.text()}")
            rx.wait_for(lambda: rx.metric_points("kit.tokens"), timeout=60)
        finally:
            assert server.terminate() == 0, server.text()
        log = server.text()
        assert ":6: ts: " in log  # the bad lines were logged...
        requests = [r.SerializeToString() for r in rx.trace_requests + rx.metric_requests]
    received = b"\n".join(requests).decode("utf-8", "surrogateescape")
    if capture:
        assert_captured_and_redacted(received, canary.places)
        assert not canaries_in(log) and not [c for _, _, c in SECRETS if c in log]
    else:
        assert_nothing_leaked(received + "\n" + log, canary.places)  # ... without their text


@pytest.mark.parametrize("capture", [False, True], ids=["content-off", "content-on"])
def test_replay_to_otlp_json_files(tmp_path, capture):
    root, _, path, _, canary = _session_files(tmp_path, capture)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update({"KIT_OTEL_CONFIG": os.devnull, "KIT_OTEL_SESSIONS_ROOT": str(root),
                "OTEL_TRACES_EXPORTER": "otlp_json_file",
                "OTEL_METRICS_EXPORTER": "otlp_json_file", "KIT_OTEL_OUTPUT_DIR": str(out),
                **(CAPTURE_ON if capture else {})})
    result = subprocess.run([sys.executable, "-m", "kit_otel.cli.main", "replay", str(path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{path}:6: ts: " in result.stderr
    files = sorted(out.glob("*.jsonl"))
    assert {f.name for f in files} >= {"traces.jsonl", "metrics.jsonl"}
    written = "\n".join(_strings(json.loads(line)) for f in files
                        for line in f.read_text().splitlines())
    terminal = result.stdout + "\n" + result.stderr
    if capture:
        assert_captured_and_redacted(written, canary.places)
        # the summary shows an error status: with capture on, the (redacted) message
        assert not [c for _, _, c in SECRETS if c in terminal]
    else:
        assert_nothing_leaked(written, canary.places)
        assert not canaries_in(terminal), terminal


def test_a_secret_across_the_length_cut_is_redacted_whole():
    policy = ContentPolicy(capture=True, max_length=40)
    for name, text, core in SECRETS:
        kept = policy.text("x" * 30 + " " + text + " " + "y" * (1 << 20))
        assert kept.startswith("x" * 30) and kept.endswith("more chars]")
        assert core[:6] not in kept[30:], (name, kept)
    state = StatePolicy(content=policy, max_value_length=40)
    assert "Pg5ecretZ"[:4] not in state.value("note", "x" * 30 + " postgres://a:Pg5ecretZ@db")
