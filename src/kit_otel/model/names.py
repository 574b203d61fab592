"""Every span name, attribute name and metric name kit-otel emits, in one place.

GenAI names follow the OpenTelemetry semantic conventions (tests check them against the
`opentelemetry-semantic-conventions` package); everything KIT-specific is under `kit.*`.
Metric instruments are declared with the OTel name and unit that make the OTel→Prometheus
translation produce exactly the exposition names of docs/design.md#metrics (the dashboards' contract):
a unit in braces is an annotation that Prometheus drops, so `{USD}` keeps `_USD` out of names.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _ga
from opentelemetry.semconv._incubating.attributes import session_attributes as _session
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _gm
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import exception_attributes as _exception
from opentelemetry.semconv._incubating.attributes.vcs_attributes import (  # noqa: F401
    VCS_REF_HEAD_NAME, VCS_REF_HEAD_REVISION, VCS_REF_HEAD_TYPE, VCS_REPOSITORY_NAME,
    VCS_REPOSITORY_URL_FULL)

# ── span names ──────────────────────────────────────────────────────────────────────────────
SPAN_TURN = "invoke_agent kit"
SPAN_SUBAGENT = "invoke_agent subagent"
SPAN_CHAT_PREFIX = "chat"  # "chat {model}"
SPAN_TOOL_PREFIX = "execute_tool"  # "execute_tool {ToolName}"
SPAN_OUT_OF_TURN_PREFIX = "kit."  # "kit.{type}" for events outside any turn

# ── GenAI semantic-convention attributes ────────────────────────────────────────────────────
# Imported from the installed semantic-conventions package wherever it has the name; the few it
# does not have yet (the newer GenAI conventions) are spelled below, marked "not in the package".
GEN_AI_OPERATION_NAME = _ga.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME = _ga.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL = _ga.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_STREAM = _ga.GEN_AI_REQUEST_STREAM
GEN_AI_RESPONSE_MODEL = _ga.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_FINISH_REASONS = _ga.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_RESPONSE_ID = _ga.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = _ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
GEN_AI_AGENT_NAME = _ga.GEN_AI_AGENT_NAME
GEN_AI_CONVERSATION_ID = _ga.GEN_AI_CONVERSATION_ID
GEN_AI_USAGE_INPUT_TOKENS = _ga.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS = _ga.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = _ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = _ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
# not in the semantic-conventions package (newest on PyPI: 0.66b2): the newer GenAI conventions'
# name for cache_creation, emitted instead of it with gen_ai_latest_experimental. Its spelling is
# the semantic-conventions-genai registry's; opentelemetry-util-genai emits it too, as a private
# constant (tests/test_semconv.py fails if util-genai spells it otherwise, and once the
# semantic-conventions package has it, so that it is imported from there instead)
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_TOOL_NAME = _ga.GEN_AI_TOOL_NAME
GEN_AI_TOOL_CALL_ID = _ga.GEN_AI_TOOL_CALL_ID
GEN_AI_TOOL_TYPE = _ga.GEN_AI_TOOL_TYPE
GEN_AI_TOOL_CALL_ARGUMENTS = _ga.GEN_AI_TOOL_CALL_ARGUMENTS
GEN_AI_TOOL_CALL_RESULT = _ga.GEN_AI_TOOL_CALL_RESULT
GEN_AI_INPUT_MESSAGES = _ga.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES = _ga.GEN_AI_OUTPUT_MESSAGES
GEN_AI_TOKEN_TYPE = _ga.GEN_AI_TOKEN_TYPE
SESSION_ID = _session.SESSION_ID
EXCEPTION_MESSAGE = _exception.EXCEPTION_MESSAGE
EXCEPTION_TYPE = _exception.EXCEPTION_TYPE
ERROR_TYPE = _error.ERROR_TYPE
ERROR_TYPE_OTHER = _error.ErrorTypeValues.OTHER.value  # "_OTHER": no better class known

OP_INVOKE_AGENT = _ga.GenAiOperationNameValues.INVOKE_AGENT.value
OP_CHAT = _ga.GenAiOperationNameValues.CHAT.value
OP_EXECUTE_TOOL = _ga.GenAiOperationNameValues.EXECUTE_TOOL.value
TOKEN_TYPE_INPUT = _ga.GenAiTokenTypeValues.INPUT.value
TOKEN_TYPE_OUTPUT = _ga.GenAiTokenTypeValues.OUTPUT.value
AGENT_KIT = "kit"
AGENT_SUBAGENT = "subagent"
# gen_ai.tool.type: the conventions' examples are function, extension and datastore (not an
# enum in the package); "agent" is ours, for the subagent tool (see docs/decisions.md)
TOOL_TYPE_FUNCTION = "function"
TOOL_TYPE_EXTENSION = "extension"
TOOL_TYPE_AGENT = "agent"

# gen_ai.provider.name: KIT's provider prefixes → the conventions' well-known values. Prefixes
# without one (ollama, openrouter, copilot, …) are passed through, as the conventions allow.
_P = _ga.GenAiProviderNameValues
PROVIDER_NAMES = {
    "anthropic": _P.ANTHROPIC.value, "openai": _P.OPENAI.value,
    "google": _P.GCP_GEMINI.value, "gemini": _P.GCP_GEMINI.value,
    "google-vertex": _P.GCP_VERTEX_AI.value, "google-vertex-anthropic": _P.GCP_VERTEX_AI.value,
    "vertex": _P.GCP_VERTEX_AI.value,
    "azure": _P.AZURE_AI_OPENAI.value, "azure-cognitive-services": _P.AZURE_AI_OPENAI.value,
    "bedrock": _P.AWS_BEDROCK.value, "amazon-bedrock": _P.AWS_BEDROCK.value,
    "cohere": _P.COHERE.value, "deepseek": _P.DEEPSEEK.value, "groq": _P.GROQ.value,
    "mistral": _P.MISTRAL_AI.value, "mistralai": _P.MISTRAL_AI.value,
    "perplexity": _P.PERPLEXITY.value, "xai": _P.X_AI.value,
    "watsonx": _P.IBM_WATSONX_AI.value,
}


def provider_name(kit_provider: str) -> str:
    """The gen_ai.provider.name of one of KIT's provider prefixes."""
    return PROVIDER_NAMES.get(kit_provider.lower(), kit_provider)


# ── OTEL_SEMCONV_STABILITY_OPT_IN ──────────────────────────────────────────────────────────


def gen_ai_latest(opt_in: str) -> bool:
    """Whether OTEL_SEMCONV_STABILITY_OPT_IN (comma-separated) asks for the newest GenAI names."""
    # the value is the one every OTel Python instrumentation reads (opentelemetry-instrumentation's
    # stability modes); imported here, not at the top: that module costs tens of milliseconds
    # that the commands which never build a pipeline should not pay
    from opentelemetry.instrumentation._semconv import _StabilityMode
    return _StabilityMode.GEN_AI_LATEST_EXPERIMENTAL.value in {v.strip() for v in opt_in.split(",")}


# ── kit.* attributes ────────────────────────────────────────────────────────────────────────
KIT_SESSION_PATH = "kit.session.path"
KIT_SESSION_RELOAD = "kit.session.reload"
KIT_PROJECT = "kit.project"
KIT_PID = "kit.pid"
KIT_SOURCE = "kit.source"
KIT_STEP_NUMBER = "kit.step.number"
KIT_COST_USD = "kit.cost.usd"  # what KIT reported, never changed
KIT_COST_SOURCE = "kit.cost.source"  # kit | price_table | unknown (pricing.CostSource)
KIT_COST_NOTIONAL_USD = "kit.cost.notional_usd"  # the price table's number where KIT said 0
KIT_COST_PRICE_DATA = "kit.cost.price_data"  # "genai-prices <version>"
KIT_COST_PRICED_AS = "kit.cost.priced_as"  # the price table's "provider/model"
KIT_COST_SUBSCRIPTION = "kit.cost.subscription"  # KIT's 0 for a subscription provider
KIT_LLM_USAGE_SOURCE = "kit.llm.usage_source"  # llm_usage | step_finish
KIT_TOOL_KIND = "kit.tool.kind"
KIT_TOOL_OUTPUT_BYTES = "kit.tool.output.bytes"
KIT_TOOL_INPUT_BYTES = "kit.tool.input.bytes"
KIT_TOOL_BLOCKED = "kit.tool.blocked"
KIT_TOOL_SOURCE = "kit.tool.source"
KIT_TOOL_OUTCOME = "kit.tool.outcome"  # ok | error | blocked (log records)
KIT_TOOL_DURATION_S = "kit.tool.duration_s"  # log records
KIT_OUTCOME = "kit.outcome"  # ok | error, of a subagent's log record
KIT_TURN_STOP_REASON = "kit.turn.stop_reason"
KIT_TURN_TOOL_CALL_COUNT = "kit.turn.tool_call_count"
KIT_TURN_TOOL_NAMES = "kit.turn.tool_names"
KIT_TURN_LLM_CALL_COUNT = "kit.turn.llm_call_count"
KIT_TURN_COST_USD = "kit.turn.cost_usd"
KIT_TURN_COST_SOURCE = "kit.turn.cost.source"
KIT_TURN_COST_NOTIONAL_USD = "kit.turn.cost.notional_usd"
# the turn with its subagents (KIT's AgentEnd, and the attributes above, exclude them)
KIT_TURN_INCLUSIVE_PREFIX = "kit.turn.inclusive."
KIT_TURN_INCLUSIVE_LLM_CALL_COUNT = "kit.turn.inclusive.llm_call_count"
KIT_TURN_INCLUSIVE_INPUT_TOKENS = "kit.turn.inclusive.input_tokens"
KIT_TURN_INCLUSIVE_OUTPUT_TOKENS = "kit.turn.inclusive.output_tokens"
KIT_TURN_INCLUSIVE_CACHE_READ_TOKENS = "kit.turn.inclusive.cache_read_tokens"
KIT_TURN_INCLUSIVE_CACHE_WRITE_TOKENS = "kit.turn.inclusive.cache_write_tokens"
KIT_TURN_INCLUSIVE_COST_USD = "kit.turn.inclusive.cost_usd"
KIT_TURN_INCLUSIVE_NOTIONAL_USD = "kit.turn.inclusive.notional_usd"
KIT_TURN_SUBAGENT_COUNT = "kit.turn.subagent_count"
KIT_TURN_DURATION_MS = "kit.turn.duration_ms"
KIT_TURN_INCOMPLETE = "kit.turn.incomplete"
KIT_TURN_AGGREGATE_SOURCE = "kit.turn.aggregate_source"  # agent_end | computed
KIT_TURN_AGGREGATE_MISMATCH = "kit.turn.aggregate_mismatch"
KIT_TURN_PROMPT_LENGTH = "kit.turn.prompt_length"
KIT_TURN_RESPONSE_LENGTH = "kit.turn.response_length"
KIT_SUBAGENT_TASK_LENGTH = "kit.subagent.task_length"
KIT_SUBAGENT_RESPONSE_LENGTH = "kit.subagent.response_length"
KIT_EXT_STATE_PREFIX = "kit.ext_state."
KIT_EXT_STATE_START_PREFIX = "kit.ext_state.start."
KIT_EXT_STATE_CHANGE = "kit.ext_state.change"
# coalesced deltas: "<prefix>.count" and "<prefix>.bytes" on the span that owns them
KIT_DELTAS_MESSAGE = "kit.message.chunks"
KIT_DELTAS_TOOL_INPUT = "kit.tool_input.deltas"
KIT_DELTAS_TOOL_OUTPUT = "kit.tool.output.chunks"
KIT_DELTAS_SUBAGENT_TEXT = "kit.subagent.text_chunks"
KIT_UNKNOWN_EVENT = "kit.event.unknown"
KIT_EVENT_PREFIX = "kit."  # span events are "kit.{type}", like kit.ext_state.change

# ── metrics ─────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class MetricSpec:
    otel_name: str
    unit: str
    kind: str  # counter | histogram | gauge
    description: str
    prometheus_name: str  # what the exposition shows (for counters without the _total)
    buckets: tuple[float, ...] | None = None


_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# the GenAI metric conventions' advice for their histograms
_GEN_AI_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                   40.96, 81.92)
_GEN_AI_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                  16777216, 67108864)
_USD = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25)
_RATIO = (0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

TOKENS = MetricSpec("kit.tokens", "{token}", "counter",
                    "Tokens used by KIT LLM calls, by type (input, output, cache_read, cache_write)",
                    "kit_tokens_total")
COST = MetricSpec("kit.cost.usd", "{USD}", "counter",
                  "Cost of KIT LLM calls in US dollars; cost_source says whose price: kit (KIT's "
                  "own), price_table (notional list price where KIT said 0), unknown (unpriced, 0)",
                  "kit_cost_usd_total")
LLM_CALLS = MetricSpec("kit.llm.calls", "{call}", "counter", "LLM calls (steps) made by KIT",
                       "kit_llm_calls_total")
TOKEN_USAGE = MetricSpec(_gm.GEN_AI_CLIENT_TOKEN_USAGE, "{token}", "histogram",
                         "Number of input and output tokens used (semantic conventions)",
                         "gen_ai_client_token_usage", _GEN_AI_TOKENS)
OPERATION_DURATION = MetricSpec(_gm.GEN_AI_CLIENT_OPERATION_DURATION, "s", "histogram",
                                "GenAI operation duration (semantic conventions)",
                                "gen_ai_client_operation_duration_seconds", _GEN_AI_SECONDS)
TIME_TO_FIRST_CHUNK = MetricSpec(_gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, "s", "histogram",
                                 "Time to receive the first chunk of a streamed LLM response "
                                 "(semantic conventions)",
                                 "gen_ai_client_operation_time_to_first_chunk_seconds",
                                 _GEN_AI_SECONDS)
# not in any package: the newer GenAI conventions split token usage by type into histograms of
# their own (no gen_ai.token.type; semantic-conventions-genai, gen-ai-inference-usage-metrics.md,
# Development); emitted instead of gen_ai.client.token.usage with
# OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental
INFERENCE_INPUT_TOKENS = MetricSpec("gen_ai.client.inference.usage.input_tokens", "{token}",
                                    "histogram", "Input tokens used per inference, cached included",
                                    "gen_ai_client_inference_usage_input_tokens", _GEN_AI_TOKENS)
INFERENCE_OUTPUT_TOKENS = MetricSpec("gen_ai.client.inference.usage.output_tokens", "{token}",
                                     "histogram", "Output tokens used per inference",
                                     "gen_ai_client_inference_usage_output_tokens", _GEN_AI_TOKENS)
TURNS = MetricSpec("kit.turns", "{turn}", "counter", "Agent turns ended, by stop reason",
                   "kit_turns_total")
TURN_DURATION = MetricSpec("kit.turn.duration", "s", "histogram", "Duration of agent turns",
                           "kit_turn_duration_seconds", _SECONDS)
TURN_COST = MetricSpec("kit.turn.cost.usd", "{USD}", "histogram",
                       "Cost of one agent turn in US dollars (KIT's plus notional), by cost_source",
                       "kit_turn_cost_usd", _USD)
TOOL_CALLS = MetricSpec("kit.tool.calls", "{call}", "counter",
                        "Tool calls by tool, kind and outcome (ok, error, blocked)",
                        "kit_tool_calls_total")
TOOL_DURATION = MetricSpec("kit.tool.duration", "s", "histogram", "Duration of tool calls",
                           "kit_tool_duration_seconds", _SECONDS)
ERRORS = MetricSpec("kit.errors", "{error}", "counter", "Errors reported by KIT",
                    "kit_errors_total")
RETRIES = MetricSpec("kit.retries", "{retry}", "counter", "LLM request retries reported by KIT",
                     "kit_retries_total")
COMPACTIONS = MetricSpec("kit.compactions", "{compaction}", "counter",
                         "Context compactions, automatic or manual", "kit_compactions_total")
CONTEXT_USAGE = MetricSpec("kit.context.usage.ratio", "1", "histogram",
                           "Context window usage when a compaction starts (0..1)",
                           "kit_context_usage_ratio", _RATIO)
SUBAGENTS = MetricSpec("kit.subagents", "{subagent}", "counter", "Subagent runs by outcome",
                       "kit_subagents_total")
SESSIONS = MetricSpec("kit.sessions", "{session}", "counter",
                      "KIT sessions started (extension hot reloads not counted)",
                      "kit_sessions_total")
BUDGET = MetricSpec("kit.budget.usd", "{USD}", "gauge",
                    "Configured spend budget in US dollars, by window and scope", "kit_budget_usd")
EXT_STATE_VALUE = MetricSpec("kit.ext_state.value", "{value}", "gauge",
                             "Numeric KIT extension-state values named in configuration",
                             "kit_ext_state_value")
SPEND_TO_DATE = MetricSpec("kit.spend_to_date.usd", "{USD}", "window_spend",
                           "Spend in the current UTC calendar day and month in US dollars, by "
                           "window, project, provider and model (what budgets compare with)",
                           "kit_spend_to_date_usd")
OTEL_EVENTS = MetricSpec("kit_otel.events", "{event}", "counter",
                         "Events kit-otel accepted, by type", "kit_otel_events_total")
OTEL_REJECTED = MetricSpec("kit_otel.events.rejected", "{event}", "counter",
                           "Input lines kit-otel rejected, by reason",
                           "kit_otel_events_rejected_total")
OTEL_DROPPED = MetricSpec("kit_otel.dropped", "{event}", "counter",
                          "Events a source reported it had to drop", "kit_otel_dropped_total")
OTEL_DEAD_LETTERED = MetricSpec("kit_otel.spans.dead_lettered", "{span}", "counter",
                                "Spans an exporter could not take at all (set aside in the "
                                "dead-letter file), by exporter",
                                "kit_otel_spans_dead_lettered_total")
OTEL_LAG = MetricSpec("kit_otel.lag", "s", "gauge",
                      "Age of the newest event processed, relative to now", "kit_otel_lag_seconds")

# `kit-otel serve`'s own gauges (observed from the daemon's state, not made by the translator)
SERVE_EXPORT_QUEUE = MetricSpec("kit_otel.export.queue", "{span}", "gauge",
                                "Spans waiting to be exported (input pauses at the configured "
                                "bound)", "kit_otel_export_queue")
SERVE_SPOOL_FILES = MetricSpec("kit_otel.spool.files", "{file}", "gauge",
                               "Spool files being followed", "kit_otel_spool_files")
SERVE_METRICS = (SERVE_EXPORT_QUEUE, SERVE_SPOOL_FILES)

# the default set (OTEL_SEMCONV_STABILITY_OPT_IN unset); gen_ai_latest_experimental replaces
# TOKEN_USAGE by LATEST_TOKEN_METRICS
ALL_METRICS = (TOKENS, COST, LLM_CALLS, TOKEN_USAGE, OPERATION_DURATION, TIME_TO_FIRST_CHUNK,
               TURNS, TURN_DURATION, TURN_COST, TOOL_CALLS, TOOL_DURATION, ERRORS, RETRIES,
               COMPACTIONS, CONTEXT_USAGE, SUBAGENTS, SESSIONS, BUDGET, EXT_STATE_VALUE, SPEND_TO_DATE,
               OTEL_EVENTS, OTEL_REJECTED, OTEL_DROPPED, OTEL_DEAD_LETTERED, OTEL_LAG)
LATEST_TOKEN_METRICS = (INFERENCE_INPUT_TOKENS, INFERENCE_OUTPUT_TOKENS)


def metric_set(latest: bool) -> tuple[MetricSpec, ...]:
    if not latest:
        return ALL_METRICS
    return tuple(m for m in ALL_METRICS if m is not TOKEN_USAGE) + LATEST_TOKEN_METRICS

# metric label keys (docs/design.md#metrics)
L_PROVIDER = "provider"
L_MODEL = "model"
L_TYPE = "type"
L_AGENT = "agent"
L_PROJECT = "project"
L_FINISH_REASON = "finish_reason"
L_STOP_REASON = "stop_reason"
L_TOOL = "tool"
L_KIND = "kind"
L_OUTCOME = "outcome"
L_AUTOMATIC = "automatic"
L_REASON = "reason"
L_SOURCE = "source"
L_SESSION_ID = "session_id"
L_COST_SOURCE = "cost_source"
L_PRICE_DATA = "price_data"  # only on cost_source="price_table" series
OTHER = "other"  # what values beyond a cardinality limit fold into
