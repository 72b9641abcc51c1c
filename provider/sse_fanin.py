"""Provider `sse_fanin`. It has no credentials: the tools take their own URLs, keys and
tokens as parameters, so nothing has to be authorised before they can run."""

from __future__ import annotations

from typing import Any

from dify_plugin import ToolProvider


class SseFaninProvider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        return None
