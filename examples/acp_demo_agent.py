"""A tiny ACP agent (stdio) for examples/acp_client.py: it thinks, reads a file through a tool,
answers, and reports usage and cost as ACP agents do. Not meant to be run by hand."""

from __future__ import annotations

import asyncio

from acp import (PROTOCOL_VERSION, run_agent, start_tool_call, text_block, tool_content,
                 update_agent_message_text, update_agent_thought_text, update_tool_call)
from acp.schema import (AgentCapabilities, Cost, InitializeResponse, NewSessionResponse,
                        PromptResponse, SessionConfigOptionSelect, SessionConfigSelectOption,
                        Usage, UsageUpdate)


class DemoAgent:
    def __init__(self):
        self.conn = None
        self.cost = 0.0
        self.turns = 0

    def on_connect(self, conn):
        self.conn = conn

    async def initialize(self, protocol_version, **kwargs):
        return InitializeResponse(protocol_version=PROTOCOL_VERSION,
                                  agent_capabilities=AgentCapabilities())

    async def new_session(self, cwd, **kwargs):
        model = "anthropic/claude-sonnet-4-5"
        return NewSessionResponse(session_id="demo-session", config_options=[
            SessionConfigOptionSelect(id="model", name="Model", category="model", type="select",
                                      current_value=model,
                                      options=[SessionConfigSelectOption(value=model,
                                                                         name=model)])])

    async def prompt(self, session_id, prompt, **kwargs):
        async def send(update):
            await self.conn.session_update(session_id=session_id, update=update)
            await asyncio.sleep(0.01)  # streaming takes time
        self.turns += 1
        call_id = f"read-{self.turns}"
        await send(update_agent_thought_text("I should look at the file first."))
        await send(start_tool_call(call_id, "Read pyproject.toml", kind="read",
                                   status="in_progress", raw_input={"path": "pyproject.toml"}))
        await send(update_tool_call(call_id, status="completed",
                                    content=[tool_content(text_block("[project]\nname = ..."))]))
        for word in ("The ", "project ", "is ", "kit-otel."):
            await send(update_agent_message_text(word))
        self.cost += 0.0042
        await send(UsageUpdate(session_update="usage_update", used=3100 * self.turns,
                               size=200000, cost=Cost(amount=round(self.cost, 6),
                                                      currency="USD")))
        return PromptResponse(stop_reason="end_turn", usage=Usage(
            total_tokens=1300, input_tokens=1200, output_tokens=100, cached_read_tokens=900))


if __name__ == "__main__":
    asyncio.run(run_agent(DemoAgent()))
