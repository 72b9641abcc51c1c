"""Keep every message a tool emits under the plugin daemon's line limit.

The daemon reads each message as one line and kills the plugin when a line passes 5 MiB.
What counts is the serialised JSON (the SDK writes it with pydantic, which escapes quotes,
backslashes and control characters like orjson does), not the UTF-8 size of the text: a
stream of small JSON events grows by about half once its quotes are escaped. So values are
measured with orjson and cut with a marker that says what was left out.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["LINE_LIMIT", "VALUE_BUDGET", "serialised_size", "fit", "truncation_marker"]

LINE_LIMIT = 5 * 1024 * 1024      # the daemon's limit for one message line
VALUE_BUDGET = 4 * 1024 * 1024    # what one value may take: room left for the message envelope
_MIN_ITEM = 256                   # below this, an item is dropped rather than cut


def serialised_size(value: Any) -> int:
    """Bytes `value` takes inside a JSON message line."""
    return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str))


def truncation_marker(kept: int, total: int, unit: str) -> str:
    return (f"\n[truncated by sse_fanin: {kept} of {total} {unit} kept; the rest would pass "
            f"Dify's {LINE_LIMIT // (1024 * 1024)} MiB message limit]")


def _fit_text(text: str, budget: int) -> str:
    if serialised_size(text) <= budget:
        return text
    marker = truncation_marker(0, len(text), "characters")
    room = budget - serialised_size(marker) - 16
    low, high = 0, min(len(text), max(room, 0))  # a character takes at least one byte
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if serialised_size(text[:middle]) <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low] + truncation_marker(low, len(text), "characters")


def _fit_list(items: list[Any], budget: int) -> list[Any]:
    kept: list[Any] = []
    used = 2
    for index, item in enumerate(items):
        left = budget - used - 200  # room for the closing marker
        size = serialised_size(item)
        if size > left:
            if left >= _MIN_ITEM:
                kept.append(fit(item, left))
                index += 1
            if index < len(items):
                kept.append(truncation_marker(index, len(items), "items").strip())
            return kept
        kept.append(item)
        used += size + 1
    return kept


def _fit_dict(mapping: dict[Any, Any], budget: int) -> dict[Any, Any]:
    kept: dict[Any, Any] = {}
    used = 2
    items = list(mapping.items())
    for index, (key, value) in enumerate(items):
        left = budget - used - serialised_size(str(key)) - 300
        size = serialised_size(value)
        if size > left:
            if left < _MIN_ITEM:
                kept["_truncated"] = truncation_marker(index, len(items), "keys").strip()
                return kept
            value = fit(value, left)
            size = serialised_size(value)
        kept[key] = value
        used += serialised_size(str(key)) + size + 2
    return kept


def fit(value: Any, budget: int = VALUE_BUDGET) -> Any:
    """`value` itself when its JSON fits in `budget` bytes, else a cut copy with markers."""
    if serialised_size(value) <= budget:
        return value
    if isinstance(value, str):
        return _fit_text(value, budget)
    if isinstance(value, (list, tuple)):
        return _fit_list(list(value), budget)
    if isinstance(value, dict):
        return _fit_dict(value, budget)
    return _fit_text(orjson.dumps(value, default=str).decode(), budget)
