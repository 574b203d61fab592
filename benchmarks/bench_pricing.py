"""Cost of a notional price (kit_otel.translate.pricing) per LLM call KIT priced at 0, and what the cache
of model resolutions saves against calling genai-prices directly.

- cold: importing genai-prices and the first price (once per process);
- kit-otel hit / miss: `PriceTable.notional_usd` for a known model and an unknown one, after the
  first call (resolution cached; the price arithmetic is genai-prices' own);
- direct hit / miss: `genai_prices.calc_price` for the same calls (its own lookup cache for hits,
  none for provider misses, plus the prefix fallbacks kit-otel would otherwise repeat).

Run: python benchmarks/bench_pricing.py
"""

from __future__ import annotations

import subprocess
import sys
import time

CALLS = 3000
SONNET = "claude-sonnet-4-5-20250929"
TOKENS = (1_200, 400, 150_000, 20_000)


def per_call_us(fn, calls: int = CALLS) -> float:
    fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1e6


def cold_ms() -> float:
    code = ("import time; t=time.perf_counter(); from kit_otel.translate.pricing import PriceTable; "
            f"PriceTable().notional_usd('anthropic', {SONNET!r}, {TOKENS!r}, 0); "
            "print((time.perf_counter()-t)*1e3)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(3)]
    return min(runs)


def main() -> None:
    from genai_prices import Usage, calc_price

    from kit_otel.translate.pricing import PriceTable

    table = PriceTable()
    usage = Usage(input_tokens=TOKENS[0] + TOKENS[2] + TOKENS[3], output_tokens=TOKENS[1],
                  cache_read_tokens=TOKENS[2], cache_write_tokens=TOKENS[3])

    def direct_miss():
        for provider, model in (("ollama", "qwen3-coder:30b"), (None, "qwen3-coder:30b")):
            try:
                calc_price(usage, model, provider_id=provider)
            except LookupError:
                pass

    rows = [
        ("kit-otel hit", per_call_us(lambda: table.notional_usd("anthropic", SONNET, TOKENS, 0))),
        ("direct hit", per_call_us(lambda: calc_price(usage, SONNET, provider_id="anthropic"))),
        ("kit-otel miss", per_call_us(
            lambda: table.notional_usd("ollama", "qwen3-coder:30b", TOKENS, 0))),
        ("direct miss", per_call_us(direct_miss, 300)),
    ]
    print(f"cold (import + first price): {cold_ms():.0f} ms")
    for name, us in rows:
        print(f"{name:>14}: {us:9.2f} µs per call (CPU)")


if __name__ == "__main__":
    main()
