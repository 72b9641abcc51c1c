"""Turn Dify tool parameters (strings typed into a form or produced by an LLM) into clean
Python values. Every error is a one-line ValueError that names the parameter and never
echoes a secret. No Dify import here, so these are tested in-process."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

__all__ = [
    "split_urls",
    "parse_pairs",
    "parse_body",
    "parse_json_object",
    "number",
    "whole_number",
    "choice",
    "text",
    "flag",
    "MISSING_BODY",
]

from fanin.request import MISSING as MISSING_BODY  # noqa: E402  one "no JSON body" marker, the engine's
_URL_SPLIT = re.compile(r",\s*(?=https?://)", re.IGNORECASE)


def text(params: dict[str, Any], name: str) -> str:
    """A string parameter, '' when absent or null (Dify sends None for empty fields)."""
    value = params.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def split_urls(value: Any) -> list[str]:
    """One or many URLs: one per line, or comma-separated. A comma only separates when the
    next part starts with http(s)://, so commas inside a query string survive."""
    if isinstance(value, list):
        raw = [str(v) for v in value]
    else:
        raw = str(value or "").splitlines()
    urls: list[str] = []
    for line in raw:
        for part in _URL_SPLIT.split(line.strip()):
            part = part.strip().strip(",").strip()
            if part:
                urls.append(part)
    if not urls:
        raise ValueError("url: give at least one http:// or https:// URL")
    return urls


def parse_json_object(value: Any, name: str) -> dict[str, Any]:
    """A JSON object given as text (or already a dict); '' means {}."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    try:
        parsed = orjson.loads(str(value))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name}: must be a JSON object like {{\"key\": \"value\"}}")
    return parsed


def parse_pairs(value: Any, name: str, *, allow_equals: bool = False) -> list[tuple[str, str]]:
    """`Key: value` per line, or a JSON object. With allow_equals, `key=value` lines too
    (query parameters). Values are kept verbatim apart from surrounding spaces."""
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        obj = value
    else:
        stripped = str(value).strip()
        if stripped.startswith("{"):
            obj = parse_json_object(stripped, name)
        else:
            obj = None
    if obj is not None:
        pairs = []
        for key, item in obj.items():
            if isinstance(item, (dict, list)):
                item = orjson.dumps(item).decode()
            elif item is None:
                item = ""
            elif isinstance(item, bool):
                item = "true" if item else "false"
            pairs.append((str(key), str(item)))
        return pairs
    pairs = []
    for number_, line in enumerate(str(value).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        colon = line.find(":")
        equals = line.find("=") if allow_equals else -1
        cuts = [i for i in (colon, equals) if i > 0]
        if not cuts:
            form = "'Key: value' or 'key=value'" if allow_equals else "'Key: value'"
            raise ValueError(f"{name}: line {number_} is not {form}")
        cut = min(cuts)
        key, item = line[:cut].strip(), line[cut + 1 :].strip()
        if not key:
            raise ValueError(f"{name}: line {number_} has an empty name")
        pairs.append((key, item))
    return pairs


def parse_body(value: Any) -> tuple[Any, Any]:
    """(json_body, raw_body): JSON text becomes a JSON body, anything else is sent raw.
    The one not used is MISSING_BODY / None."""
    if value is None or value == "":
        return MISSING_BODY, None
    if isinstance(value, (dict, list)):
        return value, None
    raw = str(value)
    stripped = raw.strip()
    if stripped[:1] in ("{", "["):
        try:
            return orjson.loads(stripped), None
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"body: looks like JSON but is not valid ({exc.msg} at position {exc.pos})") from None
    return MISSING_BODY, raw


def _read_float(params: dict[str, Any], name: str, kind: str) -> float | None:
    """The parameter as a float, or None when it is empty; `kind` names it in errors."""
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be {kind}, got {str(value)[:40]!r}") from None


def number(params: dict[str, Any], name: str, default: float | None, *, maximum: float | None = None,
           zero_means_none: bool = False) -> float | None:
    """A positive number (seconds); empty means the default, values over `maximum` are capped."""
    result = _read_float(params, name, "a number")
    if result is None:
        return default
    if not math.isfinite(result):
        raise ValueError(f"{name}: must be a finite number")
    if zero_means_none and result == 0:
        return None
    if result <= 0:
        raise ValueError(f"{name}: must be greater than 0, got {result:g}")
    if maximum is not None and result > maximum:
        result = maximum
    return result


def whole_number(params: dict[str, Any], name: str, default: int | None, *, minimum: int = 0,
                 maximum: int | None = None) -> int | None:
    result = _read_float(params, name, "a whole number")
    if result is None:
        return default
    if not math.isfinite(result) or result != int(result):
        raise ValueError(f"{name}: must be a whole number, got {params.get(name)!r}")
    result_int = int(result)
    if result_int < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {result_int}")
    if maximum is not None and result_int > maximum:
        result_int = maximum
    return result_int


def flag(params: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean parameter: Dify sends True/False; an LLM or a variable may send text."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in ("true", "yes", "1", "on"):
        return True
    if word in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{name}: must be true or false, got {str(value)[:40]!r}")


def choice(params: dict[str, Any], name: str, options: tuple[str, ...], default: str) -> str:
    value = text(params, name).strip().lower() or default
    if value not in options:
        raise ValueError(f"{name}: choose one of {', '.join(options)}, got {value[:40]!r}")
    return value
