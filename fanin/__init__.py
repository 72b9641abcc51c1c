"""fanin: a spec-exact Server-Sent Events client. Many streams, resilient reconnects,
one arrival-ordered queue. See docs/ENGINE_API.md for how the modules fit."""

__version__ = "0.1.0"

from .errors import FaninError, UsageError  # noqa: E402
from .events import Event, SourceError, SourceReport, Summary, dumps  # noqa: E402

__all__ = ["__version__", "FaninError", "UsageError", "Event", "SourceError", "SourceReport", "Summary", "dumps",
           "FanIn", "Request", "StreamConfig"]


def __getattr__(name: str):
    # Lazy: `import fanin` stays cheap (the Dify plugin and the parser need no aiohttp).
    if name == "FanIn":
        from .merge import FanIn

        return FanIn
    if name in ("Request", "StreamConfig"):
        from . import stream

        return getattr(stream, name)
    raise AttributeError(name)
