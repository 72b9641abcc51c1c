"""Words every face shares when it counts things for people: "1 event", "2 events",
"1 process", "3 processes", never "1 events" or "process(es)"."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, singular: str, plural_form: str | None = None, *, thousands: bool = False) -> str:
    """`count` and the noun that agrees with it: plural(1, "event") -> "1 event";
    plural(2, "process", "processes") -> "2 processes". thousands: 12,345."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}" if thousands else f"{count} {word}"
