"""Notional cost: what an LLM call would cost at list price, for the calls KIT priced at 0.

KIT reports `Cost = 0` for Anthropic OAuth (subscription) credentials and for models its registry
cannot price (`llmUsageMeta` in KIT's extensions bridge). Those calls are priced here from the
`genai-prices` table and kept apart from what KIT reported: a number KIT reported is never
changed, and every cost says where it came from (`CostSource`) and which price data made it.

KIT's token counts are disjoint — `InputTokens` excludes cache reads and writes, and KIT's own
price is `input·p_in + cache_read·p_read + cache_write·p_write + output·p_out` — while
genai-prices counts cache tokens inside `input_tokens`. The conversion below is the one place
that knows; getting it wrong is how downstream tools over-price cache-heavy calls 2.5–3×.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata

from kit_otel.model import names as n

log = logging.getLogger("kit_otel.pricing")

PRICE_TABLE_PACKAGE = "genai-prices"

# KIT's provider ids (models.dev, `provider/model` in KIT's --model) that genai-prices spells
# differently; the rest are the same word.
_PROVIDER_ALIASES = {
    "xai": "x-ai", "bedrock": "aws", "amazon-bedrock": "aws", "gemini": "google",
    "google-vertex": "google", "vertex": "google", "vertexai": "google",
    "azure-openai": "azure", "moonshot": "moonshotai", "zhipu": "zhipuai",
}


class CostSource:
    """Where a cost number came from (the `cost_source` label, `kit.cost.source`)."""
    KIT = "kit"  # KIT priced the call (its number, untouched)
    PRICE_TABLE = "price_table"  # KIT said 0 for tokens it used: priced from genai-prices
    UNKNOWN = "unknown"  # KIT said 0 and the price table does not know the model either
    ALL = (KIT, PRICE_TABLE, UNKNOWN)


@dataclass(frozen=True, slots=True)
class CallCost:
    source: str
    notional_usd: float = 0.0  # the price table's number; 0 unless source is price_table
    priced_as: str = ""  # "provider/model" the price table matched
    subscription: bool = False  # KIT's zero for a subscription provider: not billed per token


_KIT_PRICED = CallCost(CostSource.KIT)


def price_data_version() -> str:
    """`genai-prices <version>`: the price data a notional cost was computed from."""
    try:
        return f"{PRICE_TABLE_PACKAGE} {metadata.version(PRICE_TABLE_PACKAGE)}"
    except metadata.PackageNotFoundError:
        return ""


class PriceTable:
    """genai-prices behind a cache of model resolutions (hits and misses alike).

    Why the cache: resolving a model name walks every provider's match clauses; a miss costs
    several of those walks (prefix fallbacks). The price arithmetic itself stays genai-prices'
    (tiers, time-dependent prices), measured in benchmarks/bench_pricing.py."""

    def __init__(self, enabled: bool = True, subscription_providers: tuple[str, ...] = ()):
        self.enabled = enabled
        self.subscription_providers = frozenset(p.lower() for p in subscription_providers)
        self.version = price_data_version() if enabled else ""
        self._models: dict[tuple[str, str], tuple[object, object] | None] = {}
        self._snapshot = None
        self._usage_type = None
        if enabled and not self.version:
            log.warning("%s is not installed: calls KIT priced at 0 stay unpriced "
                        "(cost_source=unknown)", PRICE_TABLE_PACKAGE)
            self.enabled = False

    def preload(self) -> None:
        """Import the price table now (0.3-3 s) rather than at the first call KIT priced at 0,
        where the import would stall a live stream."""
        if self.enabled:
            self._load()

    def _load(self) -> bool:
        if self._snapshot is None:
            try:
                from genai_prices import Usage, data_snapshot
            except ImportError as exc:  # installed but broken: say so once, price nothing
                log.warning("%s cannot be imported (%s): calls KIT priced at 0 stay unpriced",
                            PRICE_TABLE_PACKAGE, exc)
                self.enabled = False
                return False
            self._snapshot, self._usage_type = data_snapshot.get_snapshot(), Usage
        return True

    def _resolve(self, provider: str, model: str) -> tuple[object, object] | None:
        key = (provider, model)
        if key in self._models:
            return self._models[key]
        found = None
        for provider_id, model_ref in _candidates(provider, model):
            try:
                found = self._snapshot.find_provider_model(model_ref, None, provider_id, None)
                break
            except LookupError:
                continue
        self._models[key] = found
        return found

    def notional_usd(self, provider: str, model: str, tokens: tuple[int, int, int, int],
                     at_ns: int) -> tuple[float, str] | None:
        """(list price in USD, "provider/model" it matched) of one call, or None if unknown.
        `tokens` are KIT's (input, output, cache_read, cache_write); `at_ns` picks the prices
        in force when the call was made."""
        if not self.enabled or not model or not self._load():
            return None
        found = self._resolve(provider.lower(), model.lower())
        if found is None:
            return None
        table_provider, table_model = found
        input_tokens, output_tokens, cache_read, cache_write = tokens
        usage = self._usage_type(input_tokens=input_tokens + cache_read + cache_write,
                                 output_tokens=output_tokens, cache_read_tokens=cache_read,
                                 cache_write_tokens=cache_write)
        when = datetime.fromtimestamp(at_ns / 1e9, tz=timezone.utc) if at_ns > 0 else None
        try:
            price = table_model.calc_price(usage, table_provider, genai_request_timestamp=when)
        except (ValueError, ArithmeticError, LookupError) as exc:
            log.warning("price table cannot price %s/%s: %s", provider, model, exc)
            return None
        return float(price.total_price), f"{table_provider.id}/{table_model.id}"

    def cost_of(self, kit_cost: float, provider: str, model: str,
                tokens: tuple[int, int, int, int], at_ns: int) -> CallCost:
        """Where this call's cost comes from, and its notional price when KIT's is missing."""
        if kit_cost > 0 or not any(tokens):
            return _KIT_PRICED  # KIT's number stands (and a call without tokens costs 0)
        subscription = provider.lower() in self.subscription_providers
        priced = self.notional_usd(provider, model, tokens, at_ns)
        if priced is None:
            return CallCost(CostSource.UNKNOWN, subscription=subscription)
        return CallCost(CostSource.PRICE_TABLE, priced[0], priced[1], subscription)


def _candidates(provider: str, model: str):
    """(provider id, model ref) pairs to try, most specific first: as KIT named them, then a
    model renamed by a provider prefix (`anthropic/claude-…` through a router), then any
    provider that lists the model."""
    provider_id = _PROVIDER_ALIASES.get(provider, provider) or None
    yield provider_id, model
    if "/" in model:
        prefix, bare = model.rsplit("/", 1)
        owner = prefix.rsplit("/", 1)[-1]
        yield _PROVIDER_ALIASES.get(owner, owner), bare
        yield provider_id, bare
        yield None, bare
    yield None, model


@dataclass
class RunCost:
    """The cost provenance of an agent loop (a turn, or a subagent's child agent)."""
    notional_usd: float = 0.0
    sources: set[str] = field(default_factory=set)

    def add(self, call: CallCost) -> None:
        self.sources.add(call.source)
        self.notional_usd += call.notional_usd

    def add_run(self, other: "RunCost") -> None:
        """Another loop's provenance and notional spend (a subagent's)."""
        self.sources |= other.sources
        self.notional_usd += other.notional_usd

    @property
    def source(self) -> str:
        """One word for the loop: unknown if any call was unpriced, price_table if any was
        priced from the table, else kit (KIT priced everything, or there was nothing)."""
        if CostSource.UNKNOWN in self.sources:
            return CostSource.UNKNOWN
        if CostSource.PRICE_TABLE in self.sources:
            return CostSource.PRICE_TABLE
        return CostSource.KIT


def call_cost_attributes(call: CallCost, price_data: str) -> dict[str, object]:
    """The chat span's provenance attributes (next to KIT's own `kit.cost.usd`)."""
    attrs: dict[str, object] = {n.KIT_COST_SOURCE: call.source}
    if call.source == CostSource.PRICE_TABLE:
        attrs[n.KIT_COST_NOTIONAL_USD] = call.notional_usd
        attrs[n.KIT_COST_PRICE_DATA] = price_data
        attrs[n.KIT_COST_PRICED_AS] = call.priced_as
    if call.subscription:
        attrs[n.KIT_COST_SUBSCRIPTION] = True
    return attrs


def cost_metric_labels(call: CallCost, price_data: str) -> dict[str, str]:
    """Labels `kit_cost_usd_total` adds: the source, and the price data only where it priced."""
    if call.source == CostSource.PRICE_TABLE:
        return {n.L_COST_SOURCE: call.source, n.L_PRICE_DATA: price_data}
    return {n.L_COST_SOURCE: call.source}


def run_cost_attributes(run: RunCost, price_data: str) -> dict[str, object]:
    """A turn span's provenance attributes (next to KIT's own `kit.turn.cost_usd`)."""
    attrs: dict[str, object] = {n.KIT_TURN_COST_SOURCE: run.source}
    if CostSource.PRICE_TABLE in run.sources:
        attrs[n.KIT_TURN_COST_NOTIONAL_USD] = run.notional_usd
        attrs[n.KIT_COST_PRICE_DATA] = price_data
    return attrs
