"""Dify tool `sse_request`: fan in one or many SSE streams and type the text out live."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from tools.messages import to_messages
from tools.sse_core import plan_sse_request, run_sse_request


class SseRequestTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        yield from to_messages(self, lambda: run_sse_request(plan_sse_request(tool_parameters)))
