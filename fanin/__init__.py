"""fanin: a spec-exact Server-Sent Events client. Many streams, resilient reconnects,
one arrival-ordered queue. See docs/ENGINE_API.md for how the modules fit."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .errors import FaninError, UsageError  # noqa: E402
from .events import Batch, Event, SourceError, SourceReport, Summary, dumps  # noqa: E402

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports these on first use
    from .merge import FanIn
    from .request import Request, StreamConfig
    from .stream import StreamObserver

__all__ = ["__version__", "FaninError", "UsageError", "Batch", "Event", "SourceError", "SourceReport", "Summary",
           "dumps", "FanIn", "Request", "StreamConfig", "StreamObserver"]


def __getattr__(name: str) -> object:
    # Lazy: `import fanin` stays cheap (the Dify plugin and the parser need no aiohttp).
    if name == "FanIn":
        from .merge import FanIn

        return FanIn
    if name in ("Request", "StreamConfig"):
        from . import request

        return getattr(request, name)
    if name == "StreamObserver":
        from .stream import StreamObserver

        return StreamObserver
    raise AttributeError(f"module 'fanin' has no attribute {name!r}")
