"""Dify tool `dify_chatflow_sse`: call a Dify app's streaming API and return only the answer."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from tools.chatflow_core import plan_chatflow, run_chatflow
from tools.conversations import PluginStorage
from tools.messages import to_messages


class DifyChatflowSseTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        user_id = self.runtime.user_id if self.runtime else None
        store = PluginStorage(self.session.storage)   # remember_conversation: the plugin's own storage

        def outputs():
            return run_chatflow(plan_chatflow(tool_parameters, user_id, store), store=store)

        yield from to_messages(self, outputs)
