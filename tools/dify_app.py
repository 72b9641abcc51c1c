"""Dify tool `dify_app`: call an app of this workspace, picked in an app selector (Dify's
reverse invocation, no API key), and stream only its answer."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from tools.app_invoke_core import AppCall, plan_app_call, run_app_call
from tools.conversations import PluginStorage
from tools.messages import to_messages


class DifyAppTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        store = PluginStorage(self.session.storage)   # remember_conversation: the plugin's own storage
        user_id = self.runtime.user_id if self.runtime else None

        def outputs():
            return run_app_call(plan_app_call(tool_parameters, store, user_id), self._events, store)

        yield from to_messages(self, outputs)

    def _events(self, call: AppCall) -> Iterable[dict]:
        app = self.session.app
        if call.method == "chat":
            return app.chat.invoke(app_id=call.app_id, query=call.query, inputs=call.inputs,
                                   response_mode="streaming", conversation_id=call.conversation_id)
        if call.method == "completion":
            return app.completion.invoke(app_id=call.app_id, inputs=call.inputs, response_mode="streaming")
        return app.workflow.invoke(app_id=call.app_id, inputs=call.inputs, response_mode="streaming")
