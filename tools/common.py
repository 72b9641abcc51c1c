"""What every tool shares: the one failure type the user sees, the guarded FanIn, the run
through the bridge, text pieces, and the plugin process's byte budget.

Kept apart from the tools' own logic so a tool module imports only what it uses, and so
importing a tool changes nothing in the process: the plugin's entry point (main.py) switches
the byte budget on, explicitly, with `use_process_budget()`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fanin.budget import ByteBudget, process_budget, set_process_budget
from fanin.embed.bridge import get_bridge
from fanin.embed.netguard import AddressGuard, guard_from_env
from fanin.events import Batch, Event, SourceError
from fanin.merge import FanIn, make_session
from fanin.stream import Request, StreamConfig

__all__ = ["ToolFailure", "new_fanin", "run_fanin", "split_text", "use_process_budget",
           "MAX_DURATION_CAP", "PROCESS_BUFFER_BUDGET", "TEXT_PIECE"]

MAX_DURATION_CAP = 590.0  # stays under the plugin daemon's 600 s execution ceiling
TEXT_PIECE = 256 * 1024  # characters per text message (at most 1 MiB of UTF-8)
# What all streams of the plugin process may hold of unfinished lines and events together:
# the plugin serves many tool calls in one process, each with up to 4 MiB per stream.
PROCESS_BUFFER_BUDGET = 64 * 1024 * 1024


class ToolFailure(Exception):
    """The run failed as a whole; str() is the one line the user sees."""


def use_process_budget(limit_bytes: int = PROCESS_BUFFER_BUDGET) -> ByteBudget:
    """Bound what all streams of this process buffer together (see fanin/budget.py); the
    plugin's entry point calls it once. A budget someone already set is kept."""
    return process_budget() or set_process_budget(limit_bytes)  # type: ignore[return-value]


def new_fanin(requests: Sequence[Request], config: StreamConfig, *, guard: AddressGuard | None = None,
              connector_factory: Any = None, **limits: Any) -> FanIn:
    """A FanIn whose every connection and every URL, redirects included, passes the
    destination guard (see fanin/embed/netguard.py). `connector_factory(guard)` may build
    the session itself (it must use the guard's socket factory)."""
    guard = guard or guard_from_env()
    for request in requests:
        guard.check_url(request.url)  # an IP literal is refused at once, with one clear line
    if connector_factory is None:
        def factory():
            return make_session(socket_factory=guard.socket_factory)
    else:
        def factory():
            return connector_factory(guard)
    return FanIn(list(requests), config, connector_factory=factory, check_hop=guard.check_hop, **limits)


def run_fanin(fan: FanIn, deadline: float) -> Iterator[list[Event | SourceError]]:
    """The engine's merged output through the process-wide bridge, one list per hand-off
    (FanIn.stream_batches: far fewer crossings than one per event), as Events and errors."""
    for chunk in get_bridge().iterate(fan.stream_batches, deadline=deadline):
        items: list[Event | SourceError] = []
        for item in chunk:
            if type(item) is Batch:
                items.extend(item.events())
            else:
                items.append(item)
        yield items


def split_text(text: str) -> Iterator[str]:
    """Live text in pieces small enough for one message each."""
    for start in range(0, len(text), TEXT_PIECE):
        yield text[start : start + TEXT_PIECE]
