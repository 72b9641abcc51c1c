"""Dotted paths into JSON data (`choices.0.delta.content`, `answer`), shared by
`--order-by` and the Dify tools' `extract`. Digits index lists; anything missing is None."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["parse_path", "get_path", "extract_from_data", "text_at"]


def parse_path(path: str) -> tuple[str, ...]:
    parts = tuple(p for p in path.strip().split(".") if p != "")
    if not parts:
        raise ValueError(f"empty JSON path {path!r}")
    return parts


def get_path(obj: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and (part.isdigit() or (part.startswith("-") and part[1:].isdigit())):
            index = int(part)
            obj = obj[index] if -len(obj) <= index < len(obj) else None
        else:
            return None
        if obj is None:
            return None
    return obj


def extract_from_data(data: str, parts: tuple[str, ...]) -> Any:
    """The value at `parts` in an event's JSON data, or None when the data is not JSON."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return get_path(obj, parts)


def text_at(data: str, parts: tuple[str, ...]) -> str | None:
    """The value at `parts` in an event's JSON data as text to show (strings as they are,
    numbers and booleans as JSON writes them, objects and lists as JSON), or None when the
    data is not JSON or holds nothing there: such an event adds no text."""
    value = extract_from_data(data, parts)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value).decode()
