"""Human durations for command-line options ("30s", "2m", "500ms", "1h30m") and back.

Every duration option of every `fanin` command takes these forms (FORMS), through
parse_duration here (or options.duration, its argparse type): a bare number means seconds
(milliseconds for the few options documented so, such as --reorder-window and --slo)."""

from __future__ import annotations

import re

from fanin.errors import UsageError

__all__ = ["UNIT_SECONDS", "FORMS", "parse_duration", "format_duration"]

FORMS = "use e.g. 2, 2.5, 500ms, 2s, 1m or 1h"

UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str, *, option: str = "duration", default_unit: str = "s") -> float:
    """Seconds from '30s', '2m', '500ms', '1h30m', '1.5' (bare number: default_unit)."""
    raw = str(text).strip().lower()
    if not raw:
        raise UsageError(f"{option}: empty duration")
    try:
        value = float(raw) * UNIT_SECONDS[default_unit]
    except ValueError:
        pos, value = 0, 0.0
        for match in _PART.finditer(raw):
            if match.start() != pos:
                break
            value += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise UsageError(f"{option}: bad duration {text!r} ({FORMS})") from None
    if value < 0 or value != value or value == float("inf"):
        raise UsageError(f"{option}: bad duration {text!r}")
    return value


def format_duration(seconds: float) -> str:
    """Short readable form: 850ms, 12.3s, 2m05s."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"
