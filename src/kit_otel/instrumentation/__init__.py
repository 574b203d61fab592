"""kit-otel's OpenTelemetry instrumentation for Python processes (docs/design.md#architecture, issue 5).

    from kit_otel.instrumentation import EntryPoint, KitInstrumentor

    KitInstrumentor().instrument(                      # or: opentelemetry-instrument python app.py
        entry_points=[EntryPoint("my_agent.loop:Agent.turn", "turn"),
                      EntryPoint("my_agent.llm:complete", "llm_call", usage="result.usage")])

- ACP clients (`acp.ClientSideConnection`) are instrumented when the `acp` package
  (agent-client-protocol) is importable: each `prompt()` is a turn, session updates become the
  turn's lifecycle events (see `kit_otel.instrumentation.acp`).
- Declared entry points of custom Python agents (`kit_otel.instrumentation.entry_points`), from
  `entry_points=`, a TOML/JSON file (`entry_points_file=` or `KIT_OTEL_ENTRY_POINTS_FILE`) or
  `KIT_OTEL_ENTRY_POINTS="module:Qual.name=role,..."`.
- Both produce `kit_otel.model.events.Event`s for ONE in-process `Translator` built on the global
  tracer and meter providers (or `tracer_provider=` / `meter_provider=`): the spans and metrics
  of a KIT process. Extension state of the turn's session is baggage `kit.ext_state.<key>`
  during the turn; `BaggageStateSpanProcessor` (added to an SDK tracer provider unless
  `ext_state_span_processor=False`) stamps it onto spans of other instrumentations.

Telemetry failures never reach the host program: they are logged once and counted
(`KitInstrumentor().failures`, `kit_otel_dropped_total{source}`).
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any, Collection

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from kit_otel.translate.translator import Translator, TranslatorSettings
from ._core import Emitter, instrumentation_enabled
from .acp import AcpInstrumentation, acp_session_path
from .baggage import (BaggageStateSpanProcessor, ext_state_baggage, ext_state_context,
                      read_ext_state)
from .declarations import EntryPoint, EntryPointError, load_entry_points, parse_entry_points
from .entry_points import EntryPointInstrumentation
from .extractors import normalize_usage

__all__ = ["KitInstrumentor", "EntryPoint", "EntryPointError", "BaggageStateSpanProcessor",
           "ext_state_baggage", "ext_state_context", "read_ext_state", "load_entry_points",
           "parse_entry_points", "normalize_usage", "acp_session_path",
           "instrumentation_enabled"]

log = logging.getLogger("kit_otel.instrumentation")

# The ACP client part instruments this when it is installed; it is not a hard dependency
# (custom agents need only the entry points), so instrumentation_dependencies() is empty.
ACP_REQUIREMENT = "agent-client-protocol >= 0.12"

_PROCESSOR_MARK = "_kit_otel_baggage_state_processor"


def _default_settings() -> TranslatorSettings:
    """kit-otel's own configuration (KIT_OTEL_* env, config file): content capture, ext-state
    policy, sessions root, cardinality limits."""
    try:
        from kit_otel.config import load_settings
        from kit_otel.export.pipeline import translator_settings
        return translator_settings(load_settings())
    except Exception as exc:  # noqa: BLE001 - a bad setting must not break the host
        log.warning("kit-otel settings could not be loaded (%s); using defaults", exc)
        return TranslatorSettings()


class KitInstrumentor(BaseInstrumentor):
    """`opentelemetry_instrumentor` entry point `kit`. instrument() kwargs (all optional):

    tracer_provider, meter_provider   default: the global providers
    translator_settings               a TranslatorSettings (default: kit-otel's configuration)
    entry_points                      EntryPoints, mappings, or a "mod:Qual=role,..." string
    entry_points_file                 TOML/JSON file of [[entry_point]] tables
    session_path                      session of entry points that do not extract one
    acp                               False: leave ACP clients alone
    acp_session_path                  f(session_id, cwd) -> KIT session path | None
    ext_state                         False: no extension state (baggage, turn attributes)
    ext_state_span_processor          False: do not add BaggageStateSpanProcessor
    """

    _emitter: Emitter | None = None
    _acp: AcpInstrumentation | None = None
    _entry: EntryPointInstrumentation | None = None
    _atexit_registered = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    # ── BaseInstrumentor ─────────────────────────────────────────────────────────────────────

    def _instrument(self, **kwargs: Any) -> None:
        if self._emitter is not None:  # called directly twice: keep the first
            return
        tracer_provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        meter_provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        settings = kwargs.get("translator_settings") or _default_settings()
        emitter = Emitter(Translator(tracer_provider, meter_provider, settings))
        self._emitter = emitter
        ext_state = kwargs.get("ext_state", True)
        if ext_state and kwargs.get("ext_state_span_processor", True):
            self._add_state_processor(tracer_provider)

        points = []
        for source in self._entry_point_sources(kwargs):
            try:
                points.extend(source())
            except Exception as exc:  # noqa: BLE001
                log.error("kit-otel entry points not loaded: %s", exc)
        self._entry = EntryPointInstrumentation(
            emitter, default_session_path=kwargs.get("session_path") or "",
            ext_state=ext_state, state_policy=settings.state)
        self._entry.install(points)

        if kwargs.get("acp", True):
            self._acp = AcpInstrumentation(
                emitter, session_path_resolver=kwargs.get("acp_session_path"),
                ext_state=ext_state, state_policy=settings.state)
            try:
                self._acp.install()
            except Exception as exc:  # noqa: BLE001
                emitter.failed(exc, "acp")
        if not KitInstrumentor._atexit_registered:
            KitInstrumentor._atexit_registered = True
            atexit.register(self._at_exit)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._acp is not None:
            self._acp.uninstall()
            self._acp = None
        if self._entry is not None:
            self._entry.uninstall()
            self._entry = None
        if self._emitter is not None:
            self._emitter.close()  # open turns end as incomplete; nothing stays open
            self._emitter = None

    # ── helpers ──────────────────────────────────────────────────────────────────────────────

    @staticmethod
    def _entry_point_sources(kwargs: dict):
        if kwargs.get("entry_points") is not None:
            yield lambda: parse_entry_points(kwargs["entry_points"])
        path = kwargs.get("entry_points_file") or os.environ.get("KIT_OTEL_ENTRY_POINTS_FILE")
        if path:
            def from_file():
                points, options = load_entry_points(path)
                if options.get("session_path") and not kwargs.get("session_path"):
                    kwargs["session_path"] = options["session_path"]
                return points
            yield from_file
        inline = os.environ.get("KIT_OTEL_ENTRY_POINTS")
        if inline:
            yield lambda: parse_entry_points(inline)

    @staticmethod
    def _add_state_processor(tracer_provider: Any) -> None:
        add = getattr(tracer_provider, "add_span_processor", None)
        if add is None or getattr(tracer_provider, _PROCESSOR_MARK, False):
            return
        try:
            add(BaggageStateSpanProcessor())
            setattr(tracer_provider, _PROCESSOR_MARK, True)
        except Exception as exc:  # noqa: BLE001
            log.warning("kit-otel: BaggageStateSpanProcessor not added: %s", exc)

    def _at_exit(self) -> None:
        if self._emitter is not None:
            self._emitter.close()

    def add_entry_points(self, entry_points: Any) -> bool:
        """Declare more entry points while instrumented — e.g. from the program itself when
        `opentelemetry-instrument` already called instrument() without any. False when not
        instrumented (then pass them to instrument())."""
        if self._entry is None:
            return False
        self._entry.install(parse_entry_points(entry_points))
        return True

    # ── introspection ────────────────────────────────────────────────────────────────────────

    @property
    def translator(self) -> Translator | None:
        return self._emitter.translator if self._emitter is not None else None

    @property
    def failures(self) -> int:
        return self._emitter.failures if self._emitter is not None else 0

    @property
    def entry_point_errors(self) -> list[str]:
        return list(self._entry.errors) if self._entry is not None else []
