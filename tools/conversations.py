"""Conversations remembered per user, so a workflow can keep talking to a chat-style app
without wiring `conversation_id` by hand (`remember_conversation`). An explicit
`conversation_id` always wins over a remembered one.

The store is the plugin's own storage in Dify (`session.storage`, which needs
`resource.permission.storage` in manifest.yaml) or a dict in tests. Keys are a hash of
where the app is (its API base and a hash of its key, or the picked app's id) and of the
user, so neither the API key nor the user id is written to the storage."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

__all__ = ["ConversationStore", "PluginStorage", "DictStore", "conversation_key", "app_scope_for_key"]


class ConversationStore(Protocol):
    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str) -> None: ...
    def forget(self, key: str) -> None: ...


def conversation_key(app_scope: str, user: str) -> str:
    digest = hashlib.sha256(f"{app_scope}\0{user}".encode()).hexdigest()[:48]
    return f"conversation:{digest}"


def app_scope_for_key(api_base: str, api_key: str) -> str:
    """The app behind a key, without the key: its API base and a hash of the key."""
    return f"{api_base}\0{hashlib.sha256(api_key.encode()).hexdigest()}"


class DictStore:
    """In memory (tests, and any caller without Dify's storage)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def forget(self, key: str) -> None:
        self.values.pop(key, None)


class PluginStorage:
    """Dify's plugin storage (`self.session.storage` of a Tool): bytes per key; a missing key
    raises. Failures never fail the tool: a conversation that cannot be remembered is a new one."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def get(self, key: str) -> str | None:
        try:
            if hasattr(self.storage, "exist") and not self.storage.exist(key):
                return None
            value = self.storage.get(key).decode()
        except Exception:  # no such key, or the storage is unavailable
            return None
        return value or None

    def set(self, key: str, value: str) -> None:
        try:
            self.storage.set(key, value.encode())
        except Exception:  # best effort: the tool's own outcome stands
            pass

    def forget(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except Exception:
            pass
