"""Redaction cost (content capture on): ordinary text, and hostile text built to make the secret
patterns work hard, each as one field of a 1 MiB line. Captured text is redacted only as far as
it is kept (content_max_length plus a margin), so a field costs the same whatever its length.

    python benchmarks/bench_redaction.py
"""

from __future__ import annotations

import sys
import time

from kit_otel.translate.content import ContentPolicy

FIELD = 1 << 20  # as long as a line may be
# Time one field may take at the default content_max_length: capture is on only on request,
# but a slow field would still hold up every event behind it.
BUDGET_MS = 20.0

ORDINARY = ("def handler(event):\n    user = event['user']  # see https://example.com/docs\n"
            "    return {'status': 200, 'body': json.dumps(user)}\n")
HOSTILE = {
    "ordinary code": ORDINARY,
    "dotted words (URL scheme scan)": "a.",
    "JWT prefixes": "eyJ-",
    "unclosed quoted passwords": 'password="',
    "keys without values": "api_key= token: ",
    "BEGIN lines without END": "-----BEGIN RSA PRIVATE KEY-----\n",
    "base64 runs": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk",
    "Basic without credentials": "Basic aGVsbG8gd29ybGQ ",
    "URL userinfo without @": "https://u:",
}


def per_field_ms(policy: ContentPolicy, text: str, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        policy.text(text)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> int:
    policy = ContentPolicy(capture=True)
    print(f"redaction of one {FIELD >> 20} MiB field, content_max_length={policy.max_length}")
    worst = 0.0
    for name, unit in HOSTILE.items():
        text = (unit * (FIELD // len(unit) + 1))[:FIELD]
        ms = per_field_ms(policy, text)
        worst = max(worst, ms)
        print(f"  {name:<34} {ms:8.2f} ms")
    ok = worst <= BUDGET_MS
    print(f"worst {worst:.2f} ms per field (budget {BUDGET_MS:.0f} ms): {'ok' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
