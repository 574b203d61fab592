"""An ACP client driving an agent subprocess over stdio, instrumented by KitInstrumentor — the
client code below knows nothing about telemetry:

    python examples/acp_client.py

Each prompt() becomes a turn trace (invoke_agent kit → inferred chat spans, execute_tool spans)
with the tokens and cost the agent reported; see docs/instrumentation.md for the mapping.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _show import print_metrics, print_spans, providers  # noqa: E402

from kit_otel.instrumentation import KitInstrumentor  # noqa: E402
from kit_otel.translate.translator import TranslatorSettings  # noqa: E402

AGENT = str(Path(__file__).with_name("acp_demo_agent.py"))


class Client:  # the user's ACP client
    async def session_update(self, session_id, update, **kwargs):
        if update.session_update == "agent_message_chunk":
            print(update.content.text, end="", flush=True)

    async def request_permission(self, session_id, tool_call, options, **kwargs):
        from acp.schema import AllowedOutcome, RequestPermissionResponse
        return RequestPermissionResponse(outcome=AllowedOutcome(
            outcome="selected", option_id=options[0].option_id))


async def talk() -> None:
    from acp import PROTOCOL_VERSION, spawn_agent_process, text_block
    async with spawn_agent_process(Client(), sys.executable, AGENT) as (conn, _process):
        await conn.initialize(protocol_version=PROTOCOL_VERSION)
        session = await conn.new_session(cwd=str(Path.cwd()))
        for question in ("What is this project?", "And its name again?"):
            print(f"> {question}\n< ", end="")
            response = await conn.prompt(session_id=session.session_id,
                                         prompt=[text_block(question)])
            print(f"   [{response.stop_reason}]")


def main() -> None:
    tracer_provider, meter_provider, exporter, reader = providers()
    KitInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider,
                                 translator_settings=TranslatorSettings(sessions_root=None))
    asyncio.run(talk())
    KitInstrumentor().uninstrument()
    print()
    print_spans(exporter)
    print()
    print_metrics(reader)


if __name__ == "__main__":
    main()
