"""A realistic KIT session whose free text is all canaries, and the secrets redaction must catch
(imported by test_content; holds no tests itself).

Every string field of every event type that `kit_otel.translate.content` does not list as an identifier
gets a canary, found by walking the event model (`msgspec.inspect`), so a field or an event type
added to `kit_otel.model.events` is covered without touching this file. Identifier fields keep the
session's real values: tool call ids must still pair, so every code path (tool, subagent, error
status, ext-state change) is taken.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import msgspec

from kit_otel.model import events as ev
from kit_otel.translate.content import identifier_fields
from kit_otel.model.decoder import encode_event
from kit_otel.cli.generator import demo_session, write_session_header

CANARY = "QZXCANARY"  # every canary starts with it: one search finds a leak of any of them
IDENTIFIER_MARK = "QZXIDENT"  # an identifier value that must arrive (the scan's own proof)
PID = 4242

# (name, text as it would be written, the part that must never leave). The 16 formats the
# issue found passing, then the 16 that were already caught.
SECRETS = [
    ("aws temporary key id", "ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
    ("bare aws secret", "aws_secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("gitlab token", "glpat-Xq3vB8sLkT2mZ9wR4yPd", "glpat-Xq3vB8sLkT2mZ9wR4yPd"),
    ("slack webhook", "https://hooks.slack.com/services/T024BE7LD/B01J2KX7Q9Z/"
     "aB3dE6gH9jK2mN5pQ8sT1vW4", "aB3dE6gH9jK2mN5pQ8sT1vW4"),
    ("google oauth", "ya29.a0AfH6SMCxQ7pLm2Rk9Vt4Wn8Yb3Zc6Fd1Gh5Jk",
     "a0AfH6SMCxQ7pLm2Rk9Vt4Wn8Yb3Zc6Fd1Gh5Jk"),
    ("stripe live key", "sk_live_51HqLyjWDarjtT1zdp7dcXYZ", "51HqLyjWDarjtT1zdp7dcXYZ"),
    ("npm token", "npm_K7xQ2mVp9LwR4tYb8NcZ3sHd6FgJ1aEu5oWi", "K7xQ2mVp9LwR4tYb8NcZ3sHd6FgJ1aEu5oWi"),
    ("basic auth", "Authorization: Basic YWxpY2U6czNjcmV0LXB3", "YWxpY2U6czNjcmV0LXB3"),
    ("pgp private key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGXq1pgpbodyQ29udGVudA\n"
     "=Zx9q\n-----END PGP PRIVATE KEY BLOCK-----", "lQOYBGXq1pgpbodyQ29udGVudA"),
    ("private key without END", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAnoENDline7Qx",
     "MIIEowIBAAKCAQEAnoENDline7Qx"),
    ("https credentials", "https://deploy:Tr0ub4dor3x@git.example.com/repo.git", "Tr0ub4dor3x"),
    ("postgres credentials", "postgres://app:Pg5ecretZ@db.internal:5432/app", "Pg5ecretZ"),
    ("short password", "password: Zq7", "Zq7"),
    ("spaced password", 'password = "plum cart Kz9 vex"', "plum cart Kz9 vex"),
    ("pwd in a connection string", "Server=db;Uid=sa;Pwd=Vk8sTqz;", "Vk8sTqz"),
    ("passphrase", "passphrase: ember Quill 42", "ember Quill 42"),
    ("key=\"value\" in tool-argument JSON", json.dumps(
        {"command": 'curl -d "api_key=\\"Jm4Rq8Zt2Wx6\\"" https://api.example.com'}),
     "Jm4Rq8Zt2Wx6"),
    ("anthropic key", "sk-ant-api03-Qm7Xv2Lp9Rt4Wz8Yb3Nc6Fd1Gh5Jk0Se", "Qm7Xv2Lp9Rt4Wz8Yb3Nc6Fd1Gh5Jk0Se"),
    ("openai project key", "sk-proj-Ab3De6Gh9Jk2Mn5Pq8St1Vw4Yz7", "Ab3De6Gh9Jk2Mn5Pq8St1Vw4Yz7"),
    ("aws access key id", "AKIAQ3EGRT7XWZ5LM2PA", "AKIAQ3EGRT7XWZ5LM2PA"),
    ("github token", "ghp_Wq8Zx2Cv5Bn7Ml1Kj4Hg6Fd9Sa3Po0Iu2Yt", "Wq8Zx2Cv5Bn7Ml1Kj4Hg6Fd9Sa3Po0Iu2Yt"),
    ("github fine-grained token", "github_pat_11AB2CD3E0fGhIjKlMnOpQ_rStUvWxYz0123456789AbCdEf",
     "11AB2CD3E0fGhIjKlMnOpQ_rStUvWxYz0123456789AbCdEf"),
    ("slack bot token", "xoxb-2048-4096-Qw9Er8Ty7Ui6Op5As4Df", "2048-4096-Qw9Er8Ty7Ui6Op5As4Df"),
    ("google api key", "AIzaSyD3mQ8vX2pL7rT9wK4bN6cF1gH5jZ0sE-u", "SyD3mQ8vX2pL7rT9wK4bN6cF1gH5jZ0sE-u"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.Xk2Qp7Vb9Lm4Rt8Wz3Yc6Nd1Fg5Hj0",
     "eyJzdWIiOiJtYWxsb3J5In0"),
    ("rsa private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLY\n"
     "-----END RSA PRIVATE KEY-----", "MIIBOgIBAAJBAKj34GkxFhD90vcNLY"),
    ("openssh private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEQpx7\n"
     "-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEQpx7"),
    ("bearer token", "Authorization: Bearer Rf4Tg7Yh2Uj9Ik5Ol8Pq3Ws6", "Rf4Tg7Yh2Uj9Ik5Ol8Pq3Ws6"),
    ("api_key=", "api_key=Hn3Jm6Kp9Lq2", "Hn3Jm6Kp9Lq2"),
    ("password=", "password=Bv7Nc4Xz1Lk", "Bv7Nc4Xz1Lk"),
    ("token in JSON", '{"token": "Gt5Fr8De2Sw9"}', "Gt5Fr8De2Sw9"),
    ("secret env var", "AWS_SECRET_ACCESS_KEY=Yu6Ti3Re9Wq", "Yu6Ti3Re9Wq"),
]

# Ordinary text that must come through redaction unchanged.
ORDINARY = [
    "def login(user: str, password: str) -> bool:\n    password = getpass()\n"
    "    return check(user, password)",
    "git checkout 3f786850e387550fdab836ed7e6dc881de23001b && git log -1",
    "Basic usage: run the tests. The basic configuration is simple.",
    "max_tokens=1000, tokens: 12, input_tokens = 345",
    "ssh://git@github.com/mark3labs/kit.git and https://example.com:8080/path?q=1",
    "PASS: test_login (0.10s)\nbypass=true\npassed=3 failed=0",
    "The password is stored in the vault; rotate the secrets monthly.",
    "Authorization: required for admins",
    "src/kit_otel/translator.py:123: in _on_tool_call",
    "secret_key = settings.SECRET_KEY\napi_key: str = ''\ntoken = self.token",
    "const url = `https://${host}/v1/users/${id}`; // no credentials here",
    "SELECT id, name FROM users WHERE email = 'a@example.com' LIMIT 10;",
]


def secrets_text() -> str:
    # a private key without its END line runs to the end of the text: keep it last
    texts = [text for name, text, _ in SECRETS if name != "private key without END"]
    return " | ".join(texts) + " | " + dict((n, t) for n, t, _ in SECRETS)[
        "private key without END"]


class Canaries:
    """Hands out canaries, remembering where each went (event type and field)."""

    def __init__(self, payload: str = ""):
        self.payload = payload  # text after each canary (the secrets, with content on)
        self.places: dict[str, str] = {}

    def __call__(self, place: str) -> str:
        canary = f"{CANARY}{len(self.places):04d}x"
        self.places[canary] = place
        return f"{canary} {self.payload}" if self.payload else canary


def _fill(t: msgspec.inspect.Type, canary: Canaries, place: str):
    """A value of type `t` made of canaries, or None when the type holds no text."""
    if isinstance(t, msgspec.inspect.UnionType):
        for option in t.types:
            value = _fill(option, canary, place)
            if value is not None:
                return value
        return None
    if isinstance(t, msgspec.inspect.StrType):
        return canary(place)
    if isinstance(t, msgspec.inspect.ListType):
        item = _fill(t.item_type, canary, place + "[]")
        return [item] if item is not None else None
    if isinstance(t, msgspec.inspect.DictType):
        return {"arg": _fill(t.value_type, canary, place + "{}") or canary(place + "{}")}
    if isinstance(t, msgspec.inspect.AnyType):
        return canary(place)
    if isinstance(t, msgspec.inspect.StructType):
        return t.cls(**{f.name: v for f in t.fields
                        if (v := _fill(f.type, canary, f"{place}.{f.name}")) is not None})
    return None


def canary_data(event_type: str, data: ev.EventData, canary: Canaries) -> ev.EventData:
    """`data` with every free-text field (identifiers keep their values) made of canaries."""
    cls = type(data)
    info = msgspec.inspect.type_info(cls)
    keep = identifier_fields(cls)
    changes = {f.name: v for f in info.fields if f.name not in keep
               and (v := _fill(f.type, canary, f"{event_type}.{f.name}")) is not None}
    return msgspec.structs.replace(data, **changes)


def _blank(event_type: str, canary: Canaries) -> ev.EventData:
    """An event of a type the demo session lacks: identifiers marked, free text canaries."""
    cls = ev.DATA_TYPES[event_type]
    marks = {f.name: IDENTIFIER_MARK + f.name for f in msgspec.inspect.type_info(cls).fields
             if f.name in identifier_fields(cls) and isinstance(f.type, msgspec.inspect.StrType)}
    return canary_data(event_type, cls(**marks), canary)


def unknown_data(canary: Canaries) -> ev.UnknownData:
    """A type from a newer KIT: strings of unknown meaning, and numbers."""
    return ev.UnknownData(fields={"Body": canary("future_event.Body"),
                                  "Message": canary("future_event.Message"),
                                  "Steps": 3, "Nested": {"Note": canary("future_event.Nested")}})


def canary_session(root: Path, payload: str = "") -> tuple[list[ev.Event], Canaries]:
    """A demo session (tools, a subagent and its child agent, retries, an error turn, a model
    change, a compaction, a hot reload) whose free text is all canaries; the event types it
    lacks, and an unknown type, are added once outside a turn and once inside one; its
    ext-state carries canaries too. `payload` follows each canary (the secrets)."""
    canary = Canaries(payload)
    start = time.time_ns() - 3600 * 10**9
    session = root / "home--alice--shop" / "2026-06-09T13-18-10-000Z_3f9a1c2b7d4e.jsonl"
    write_session_header(session, "/home/alice/shop", "9" * 32, start)
    script = demo_session(random.Random(7), pid=PID, session_path=str(session), start_ns=start,
                          provider="anthropic", model="claude-sonnet-4-5", turns=6)
    events = []
    for e in script.events:
        e.data = canary_data(e.type, e.data, canary)
        if e.state is not None:
            e.state = {**e.state, "plan:note": canary("ext-state plan:note"),
                       "github_token": canary("ext-state github_token")}
        events.append(e)
    missing = sorted(ev.KIT_EVENT_TYPES - {e.type for e in events})
    first_turn = next(i for i, e in enumerate(events) if e.type == "input")
    first_step = next(i for i, e in enumerate(events) if e.type == "step_start")
    for at in (first_step + 1, first_turn):  # inside the first LLM call, then before the turn
        ts = events[at - 1].ts_ns
        extra = [ev.make_event(t, ts, pid=PID, session_path=str(session), source="bridge",
                               agent="main", data=_blank(t, canary)) for t in missing]
        extra.append(ev.make_event("future_event", ts, pid=PID, session_path=str(session),
                                   source="bridge", agent="main", data=unknown_data(canary)))
        events[at:at] = extra
    for seq, e in enumerate(events, 2):  # seq 1 is the spool file's bridge_start
        e.seq = seq
    return events, canary


def bad_lines() -> list[bytes]:
    """Rejected lines with canaries where a log line could quote them."""
    return [
        b'{"v":1,"ts":"' + CANARY.encode() + b'-ts sk-ant-api03-Zz9Yy8Xx7Ww6Vv5Uu4","type":"input",'
        b'"pid":4242,"data":{"Text":"' + CANARY.encode() + b'-text"}}\n',
        b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input","pid":"' + CANARY.encode() +
        b'-pid","data":{}}\n',
        b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input","data":{"Text":' + CANARY.encode() +
        b'-unquoted}}\n',
        b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"agent_end","data":{"InputTokensDelta":"' +
        CANARY.encode() + b'-tokens"}}\n',
    ]


def spool_file(spool: Path, events: list[ev.Event]) -> Path:
    """One bridge spool file: its `bridge_start` line, the events, and the bad lines."""
    path = spool / f"kit-{PID}-20260609T131810.000000000Z-1.ndjson"
    header = ev.make_event("bridge_start", events[0].ts_ns, seq=1, pid=PID,
                           session_path=events[0].session_path, source="bridge", agent="main",
                           data=ev.BridgeStart(BridgeVersion="test"))
    lines = [encode_event(header)] + [encode_event(e) for e in events]
    lines[5:5] = bad_lines()
    path.write_bytes(b"".join(lines))
    return path
