"""What of prompts, responses and tool input/output may leave the process.

Off by default (privacy). When captured, text is redacted of secret-looking strings and cut to a
length limit; lengths and byte counts are always recorded, whatever the setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Values the OTel GenAI instrumentations accept for OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT.
_TRUE_VALUES = {"true", "1", "yes", "on", "span_only", "span_and_event", "event_only"}

REDACTED = "[REDACTED]"
_SECRET_PATTERNS = [
    r"sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}",          # OpenAI / Anthropic keys
    r"AKIA[0-9A-Z]{16}",                                # AWS access key id
    r"gh[pousr]_[A-Za-z0-9]{30,}",                      # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{30,}",
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",                   # Slack
    r"AIza[0-9A-Za-z_\-]{35}",                          # Google API key
    r"eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",  # JWT
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"(?i:\bbearer\s+)[A-Za-z0-9._\-~+/]{16,}=*",
    # key=value / "key": "value" with a secret-looking key: keep the key, hide the value
    r"(?P<keep>(?i:api[_-]?key|secret|password|passwd|token|access[_-]?key)[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',;]{6,}",
]


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

    def text(self, value: str) -> str | None:
        """The text to record, or None when content is not captured."""
        if not self.capture:
            return None
        value = self.redact_text(value)
        if len(value) > self.max_length:
            return value[: self.max_length] + f"…[{len(value) - self.max_length} more chars]"
        return value


def _replace(match: re.Match) -> str:
    # keep "api_key=" readable and hide only the value after it
    keep = match.group("keep")
    return keep + REDACTED if keep else REDACTED
