"""What of an event's text may leave the process.

Two kinds of strings arrive in KIT events. *Identifiers* name things from a small vocabulary
chosen by KIT, the provider or an extension author: tool names and kinds, call ids, model and
provider names, stop and finish reasons, state names. They leave as they are (span names,
attributes, metric labels). Everything else is *free text* — prompts, responses, tool input and
output, task descriptions, error messages, warnings, source titles and URLs, and every string
field of an event type this version does not know — written by a user, a model or a tool, and
so able to carry anything, secrets included. Free text leaves only as lengths and byte counts,
unless content capture is on; then it is redacted of secret-looking strings and cut to a length
limit. A field is free text unless it is listed in `IDENTIFIER_FIELDS`, so a field a newer KIT
adds is kept in until someone decides it is an identifier.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from kit_otel.model import events as ev

# Values the OTel GenAI instrumentations accept for OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT.
_TRUE_VALUES = {"true", "1", "yes", "on", "span_only", "span_and_event", "event_only"}

REDACTED = "[REDACTED]"

# The identifier fields of each KIT event struct (Go field names); all its other string fields
# are free text. Read with `identifier_fields`.
IDENTIFIER_FIELDS: dict[type[ev.EventData], frozenset[str]] = {
    cls: frozenset(names) for cls, names in {
        ev.ToolCall: ("ToolName", "ToolCallID", "ToolKind", "Source"),
        ev.ToolCallInputStart: ("ToolCallID", "ToolName", "ToolKind"),
        ev.ToolCallInputDelta: ("ToolCallID",),
        ev.ToolCallInputEnd: ("ToolCallID",),
        ev.ToolExecutionStart: ("ToolCallID", "ToolName", "ToolKind"),
        ev.ToolExecutionEnd: ("ToolCallID", "ToolName", "ToolKind"),
        ev.ToolOutput: ("ToolCallID", "ToolName", "ToolKind"),
        ev.ToolResult: ("ToolCallID", "ToolName", "ToolKind"),
        ev.Input: ("Source",),  # "interactive", "cli", "script", "queue"
        ev.AgentEnd: ("StopReason", "ToolNames"),
        ev.SessionStart: ("SessionID",),
        ev.ModelChange: ("NewModel", "PreviousModel", "Source"),
        ev.BeforeFork: ("TargetID",),  # a session entry id
        ev.BeforeSessionSwitch: ("Reason",),  # "new" | "clear"
        ev.SubagentStart: ("ToolCallID",),
        ev.SubagentChunk: ("ToolCallID", "ChunkType", "ToolName"),
        ev.SubagentEnd: ("ToolCallID",),
        ev.StepFinish: ("FinishReason",),
        ev.ReasoningStart: ("ID",),
        ev.Source: ("SourceType", "ID"),
        ev.LLMUsage: ("Model", "Provider", "RequestID", "FinishReason"),
        ev.ThinkingLevelChange: ("NewLevel", "PreviousLevel", "Source"),
        ev.TurnStateChange: ("State", "Previous"),  # "working" | "idle"
        ev.BridgeStart: ("BridgeVersion", "StartedAt"),
    }.items()}


def identifier_fields(cls: type) -> frozenset[str]:
    """The fields of an event struct that are identifiers; none for unknown event types."""
    return IDENTIFIER_FIELDS.get(cls, frozenset())


# ── redaction ────────────────────────────────────────────────────────────────────────────────

# A quote as it appears in plain text or inside a JSON string (`\"`, `\\\"`): tool arguments
# are JSON, so a key="value" in a shell command arrives with its quotes escaped.
_Q = r"(?:\\*[\"'])"
# A value that is code, not a literal (`password=getpass()`, `token: self.token`).
_NOT_CODE = r"(?![A-Za-z_][A-Za-z0-9_]*[(.\[])"
_NOT_TYPE = r"(?!(?:None|null|nil|undefined|true|false|str|string|bytes|int|bool|SecretStr)\b)"
# One word of an unquoted value; a value of several words ends before a word that is a key.
_WORD = r"[^\s\"'\\,;&<>)}\]|]+"
_PASSWORD_KEY = r"(?:(?i:password|passwd|passphrase)|(?<![A-Za-z0-9])(?i:pwd|pw))"
_TOKEN_KEY = (r"(?i:api[_-]?key|secret|token|access[_-]?key|private[_-]?key|client[_-]?secret"
              r"|credentials?)")

_SECRET_PATTERNS = [
    # provider credentials, by their documented prefixes
    r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}",       # OpenAI / Anthropic
    r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[0-9A-Z]{16}\b",  # AWS ids
    r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{30,}",  # GitHub
    r"\bgl(?:pat|dt|rt|ptt|cbt|oas|soat|ft|imt|agent)-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"\bxox[abeprs]-[A-Za-z0-9\-]{10,}", r"\bxapp-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]+",  # webhooks
    r"\bAIza[0-9A-Za-z_\-]{35}", r"\bya29\.[A-Za-z0-9_\-.]{20,}",      # Google key / OAuth
    r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}", r"\bwhsec_[A-Za-z0-9]{24,}",  # Stripe
    r"\bnpm_[A-Za-z0-9]{36}\b", r"\bhf_[A-Za-z0-9]{30,}",             # npm, Hugging Face
    r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",               # SendGrid
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",  # JWT
    # private keys (PEM, OpenSSH, PGP) to their END line, or to the end of a text cut short
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r"(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|[\s\S]*)",
    # a bare AWS secret access key: 40 base64 characters mixing upper case, lower case and
    # digits (a git SHA, lower-case hex, is not one)
    r"(?<![A-Za-z0-9+/=])(?=[A-Za-z0-9+/]{0,39}[A-Z])(?=[A-Za-z0-9+/]{0,39}[a-z])"
    r"(?=[A-Za-z0-9+/]{0,39}[0-9])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])",
    # credentials in a URL: keep scheme://user:, hide the password (up to the host's @)
    r"(?P<k_url>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s/:@\"'\\]*:)[^\s/\"'\\]+(?=@)",
    # HTTP authorization: a header's credentials; `Basic x` only when x decodes to user:pass
    r"(?P<k_auth>\b(?i:(?:proxy-)?authorization)" + _Q + r"?[ \t]*[:=][ \t]*" + _Q + r"?"
    r"(?i:(?:basic|bearer|token|digest|negotiate)[ \t]+)?)"
    r"(?=[^\s\"'\\,;]*[0-9+/=_\-.])[^\s\"'\\,;]{8,}",
    r"(?P<k_bearer>(?i:\bbearer\s+))[A-Za-z0-9._\-~+/]{16,}=*",
    r"(?P<k_basic>(?i:\bbasic\s+))(?P<basic>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])",
    # password=…, "passphrase": "…", Pwd=…; — short, or with spaces: the whole value
    r"(?P<k_pw>" + _PASSWORD_KEY + _Q + r"?[ \t]*[:=][ \t]*(?P<q_pw>" + _Q + r")?)"
    r"(?:(?(q_pw)[^\n]+?(?=(?P=q_pw))|" + _NOT_CODE + _NOT_TYPE +
    _WORD + r"(?:[ \t]+(?![^\s:=]*[ \t]*[:=])" + _WORD + r")*))",
    # api_key=…, "token": "…", client_secret: …: a value of six characters or more
    r"(?P<k_tok>" + _TOKEN_KEY + _Q + r"?[ \t]*[:=][ \t]*" + _Q + r"?)" + _NOT_CODE +
    r"[^\s\"'\\,;&<>]{6,}",
]
_KEEP_GROUPS = ("k_url", "k_auth", "k_bearer", "k_basic", "k_pw", "k_tok")
# Redaction costs grow with the text, which can be as long as a line (1 MiB): only what is kept
# is redacted, plus this margin, so a secret across the cut is still seen whole (a private key
# cut short is redacted to the end).
_REDACTION_MARGIN = 512


def parse_capture_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE_VALUES


@dataclass
class ContentPolicy:
    capture: bool = False
    max_length: int = 2048
    redact: bool = True
    extra_patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._regex = re.compile("|".join(f"(?:{p})" for p in
                                          (*_SECRET_PATTERNS, *self.extra_patterns)))

    def redact_text(self, text: str) -> str:
        return self._regex.sub(_replace, text) if self.redact else text

    def redact_cut(self, value: str, limit: int) -> tuple[str, int]:
        """`value` redacted and cut to `limit` characters, and how many characters it lost."""
        window = value[: limit + _REDACTION_MARGIN]
        kept = self.redact_text(window)
        if len(kept) <= limit and len(window) == len(value):
            return kept, 0
        return kept[:limit], max(len(value), len(kept)) - limit

    def text(self, value: str) -> str | None:
        """The text to record, or None when content is not captured."""
        if not self.capture:
            return None
        kept, cut = self.redact_cut(value, self.max_length)
        return kept + f"…[{cut} more chars]" if cut else kept


def _replace(match: re.Match) -> str:
    basic = match.group("basic")
    if basic is not None and not _is_basic_credential(basic):
        return match.group(0)  # "Basic usage", not "Basic dXNlcjpwdw=="
    # keep "api_key=" readable and hide only the value after it
    for name in _KEEP_GROUPS:
        keep = match.group(name)
        if keep is not None:
            return keep + REDACTED
    return REDACTED


def _is_basic_credential(token: str) -> bool:
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded
