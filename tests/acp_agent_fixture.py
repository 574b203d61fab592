"""A scripted ACP agent, run as a subprocess over stdio by tests/test_instrumentation_acp.py:

    python tests/acp_agent_fixture.py

Everything it does is driven by the prompt text and by the client's answers — no timers:
- "fix the failing test": two thought chunks, a text chunk, tool `read-1` (read, completes
  with text), tool `bash-1` (execute, fails), two more text chunks, a usage_update
  (cumulative cost 0.0123 USD), then end_turn with per-turn token usage.
- "edit the config": switches the model (config_option_update) and the mode
  (current_mode_update), a text chunk, tool `edit-1` (edit) asking permission — which the
  test's client refuses — reported failed, a usage_update (cumulative 0.0150 USD), then waits
  for the client's session/cancel and answers `cancelled`.
- "echo trace context": answers with the `traceparent`/`tracestate` of the request's `_meta`.
Sessions are "sess-1", "sess-2", … (new and forked).
"""

from __future__ import annotations

import asyncio
import json

from acp import (PROTOCOL_VERSION, run_agent, start_tool_call, text_block, tool_content,
                 update_agent_message_text, update_agent_thought_text, update_tool_call)
from acp.helpers import update_current_mode
from acp.schema import (AgentCapabilities, CloseSessionResponse, ConfigOptionUpdate, Cost,
                        ForkSessionResponse, InitializeResponse, NewSessionResponse,
                        PermissionOption, PromptResponse, SessionConfigOptionSelect,
                        SessionConfigSelectOption, ToolCallUpdate, Usage, UsageUpdate)

MODELS = ("anthropic/claude-sonnet-4-5", "anthropic/claude-opus-4-1")


def model_option(current: str) -> SessionConfigOptionSelect:
    return SessionConfigOptionSelect(
        id="model", name="Model", category="model", type="select", current_value=current,
        options=[SessionConfigSelectOption(value=m, name=m) for m in MODELS])


class ScriptedAgent:
    def __init__(self) -> None:
        self.conn = None
        self.sessions = 0
        self.cancelled: dict[str, asyncio.Event] = {}

    def on_connect(self, conn) -> None:
        self.conn = conn

    async def initialize(self, protocol_version: int, **kwargs) -> InitializeResponse:
        return InitializeResponse(protocol_version=PROTOCOL_VERSION,
                                  agent_capabilities=AgentCapabilities())

    def _new_id(self) -> str:
        self.sessions += 1
        sid = f"sess-{self.sessions}"
        self.cancelled[sid] = asyncio.Event()
        return sid

    async def new_session(self, cwd: str, **kwargs) -> NewSessionResponse:
        return NewSessionResponse(session_id=self._new_id(), config_options=[model_option(MODELS[0])])

    async def fork_session(self, session_id: str, cwd: str, **kwargs) -> ForkSessionResponse:
        return ForkSessionResponse(session_id=self._new_id(), config_options=[model_option(MODELS[1])])

    async def close_session(self, session_id: str, **kwargs) -> CloseSessionResponse:
        return CloseSessionResponse()

    async def cancel(self, session_id: str, **kwargs) -> None:
        self.cancelled[session_id].set()

    async def prompt(self, session_id: str, prompt: list, **kwargs) -> PromptResponse:
        text = "".join(getattr(block, "text", "") for block in prompt)
        send = lambda update: self.conn.session_update(session_id=session_id, update=update)  # noqa: E731
        if text == "fix the failing test":
            await send(update_agent_thought_text("The test fails because "))
            await send(update_agent_thought_text("the fixture is stale."))
            await send(update_agent_message_text("Let me look."))
            await send(start_tool_call("read-1", "Read tests/test_x.py", kind="read", status="pending",
                                       raw_input={"path": "tests/test_x.py"}))
            await send(update_tool_call("read-1", status="in_progress"))
            await send(update_tool_call("read-1", status="completed",
                                        content=[tool_content(text_block("def test_x(): ..."))]))
            bash = start_tool_call("bash-1", "Run pytest", kind="execute", status="pending",
                                   raw_input={"command": "pytest -x"})
            bash.field_meta = {"claudeCode": {"toolName": "Bash"}}  # how agents name their tools
            await send(bash)
            await send(update_tool_call("bash-1", status="in_progress"))
            await send(update_tool_call("bash-1", status="failed",
                                        content=[tool_content(text_block("1 failed"))]))
            await send(update_agent_message_text("The test still fails; "))
            await send(update_agent_message_text("the fixture needs a refresh."))
            await send(UsageUpdate(session_update="usage_update", used=5200, size=200000,
                                   cost=Cost(amount=0.0123, currency="USD")))
            return PromptResponse(stop_reason="end_turn", usage=Usage(
                total_tokens=1500, input_tokens=1200, output_tokens=300, cached_read_tokens=800,
                cached_write_tokens=100))
        if text == "edit the config":
            await send(ConfigOptionUpdate(session_update="config_option_update",
                                          config_options=[model_option(MODELS[1])]))
            await send(update_current_mode("plan"))
            await send(update_agent_message_text("Editing."))
            await send(start_tool_call("edit-1", "Edit config.toml", kind="edit", status="pending"))
            await self.conn.request_permission(
                session_id=session_id, tool_call=ToolCallUpdate(tool_call_id="edit-1"),
                options=[PermissionOption(option_id="allow", name="Allow", kind="allow_once"),
                         PermissionOption(option_id="reject", name="Reject", kind="reject_once")])
            await send(update_tool_call("edit-1", status="failed"))
            await send(UsageUpdate(session_update="usage_update", used=6100, size=200000,
                                   cost=Cost(amount=0.0150, currency="USD")))
            await self.cancelled[session_id].wait()
            return PromptResponse(stop_reason="cancelled")
        if text == "echo trace context":  # what arrived in the request's _meta
            await send(update_agent_message_text(json.dumps(
                {k: kwargs.get(k) for k in ("traceparent", "tracestate")})))
            return PromptResponse(stop_reason="end_turn")
        await send(update_agent_message_text("ok"))
        return PromptResponse(stop_reason="end_turn")


if __name__ == "__main__":
    asyncio.run(run_agent(ScriptedAgent(), use_unstable_protocol=True))
