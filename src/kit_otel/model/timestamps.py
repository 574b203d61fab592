"""RFC 3339 timestamps with nanoseconds, as Go's `time.RFC3339Nano` writes them.

Python's datetime stops at microseconds, and a stream of events shares the same second prefix
over and over, so the seconds part is parsed once and cached.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

_NS = 1_000_000_000
# The latest time int64 nanoseconds since the epoch can hold (2262-04-11T23:47:16Z): OTLP-JSON
# readers, Go's time.UnixNano and most backends store times that way.
MAX_TS_NS = (1 << 63) - 1


@lru_cache(maxsize=4096)
def _prefix_seconds(prefix: str) -> int:
    # prefix is "YYYY-MM-DDTHH:MM:SS" + an offset ("Z" or "+hh:mm")
    return int(datetime.fromisoformat(prefix.replace("Z", "+00:00")).timestamp())


_prefix_cache: dict[str, int] = {}


def parse_ts(text: str) -> int:
    """Nanoseconds since the epoch; ValueError with the reason on anything malformed."""
    # fast path: what Go writes in UTC, "YYYY-MM-DDTHH:MM:SS.fffffffffZ", a second seen before
    if text[-1:] == "Z" and text[19:20] == ".":
        digits = text[20:-1]
        seconds = _prefix_cache.get(text[:19])
        if seconds is not None and 0 < len(digits) <= 9 and digits.isascii() and digits.isdigit():
            return seconds + int(digits) * _SCALE[len(digits)]
    ns = _parse_ts_slow(text)
    if text[-1:] == "Z":
        if len(_prefix_cache) > 65536:
            _prefix_cache.clear()
        _prefix_cache[text[:19]] = ns - ns % _NS
    return ns


_SCALE = [10 ** (9 - i) for i in range(10)]


def _parse_ts_slow(text: str) -> int:
    if len(text) < 19 or text[10] not in "Tt ":
        raise ValueError(f"not an RFC 3339 timestamp: {shape(text)}")
    head = text[:19]
    rest = text[19:]
    frac = 0
    if rest.startswith("."):
        end = 1
        while end < len(rest) and "0" <= rest[end] <= "9":
            end += 1
        digits = rest[1:end]
        if not digits or len(digits) > 9:
            raise ValueError(f"bad fractional seconds in {shape(text)}")
        frac = int(digits.ljust(9, "0"))
        rest = rest[end:]
    if rest not in ("Z", "z") and not (len(rest) == 6 and rest[0] in "+-" and rest[3] == ":"):
        raise ValueError(f"missing or bad UTC offset in {shape(text)}")
    try:
        return _prefix_seconds(head + rest.upper()) * _NS + frac
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {shape(text)}") from None


_SHAPE = str.maketrans({**{c: "9" for c in "0123456789"},
                        **{c: "a" for c in "ABCDEFGHIJKLMNOPQRSUVWXYabcdefghijklmnopqrsuvwxy"}})


def shape(text: str) -> str:
    """How a bad timestamp looks, without what it says: digits become 9, letters other than
    T and Z become a, anything else but the separators ?, so a secret pasted into `ts` does not
    reach the log ("9999-99-99T99:99:99Z" against "99/99/9999")."""
    masked = text[:40].translate(_SHAPE)
    masked = "".join(c if c in "9aTZtz-:.+ " else "?" for c in masked)
    return f"'{masked}'" + (f" ({len(text)} characters)" if len(text) > 40 else "")


def format_ts(ts_ns: int) -> str:
    """Go's RFC3339Nano in UTC: trailing zeros of the fraction trimmed, 'Z' suffix."""
    seconds, frac = divmod(ts_ns, _NS)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"
