"""What one load run hands back, in either mode and from one process or several: the metrics
(as picklable snapshots, merged exactly), the client's own costs, the measured window, and
why the run ended when it did not simply reach its duration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fanin.measure.metrics import LoadMetrics, merge_clients

__all__ = ["Window", "RunResult", "INTERRUPT", "ALL_FAILED"]

INTERRUPT = "interrupt"  # Ctrl-C or SIGTERM: the report is written, the run does not pass
ALL_FAILED = "all_failed"  # every connection attempt failed before any stream opened: ended early


@dataclass(frozen=True)
class Window:
    """The measured window: from the end of the warm-up, with the events and bytes in it."""

    from_s: float = 0.0
    events: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"from_s": self.from_s, "events": self.events, "bytes": self.bytes}


@dataclass
class RunResult:
    snapshots: list[dict[str, Any]]  # LoadMetrics.snapshot() of each process
    client: dict[str, Any]
    elapsed: float
    window: Window
    stopped_by: str | None = None  # None (ran its course) | INTERRUPT | ALL_FAILED
    signal: str | None = None  # "SIGINT" | "SIGTERM" with INTERRUPT
    _metrics: LoadMetrics | None = field(default=None, repr=False, compare=False)

    @property
    def metrics(self) -> LoadMetrics:
        if self._metrics is None:
            self._metrics = LoadMetrics.merge(self.snapshots)
        return self._metrics

    def __getstate__(self) -> dict[str, Any]:  # sent between processes without the merged copy
        return {**self.__dict__, "_metrics": None}

    @classmethod
    def merge(cls, results: list[RunResult]) -> RunResult:
        """Several processes' results as one (histograms added exactly; windows line up
        because the processes start on one signal)."""
        if len(results) == 1:
            return results[0]
        stops = {r.stopped_by for r in results}
        stopped_by = INTERRUPT if INTERRUPT in stops else ALL_FAILED if stops == {ALL_FAILED} else None
        return cls(
            snapshots=[s for r in results for s in r.snapshots],
            client=merge_clients([r.client for r in results]),
            elapsed=max(r.elapsed for r in results),
            window=Window(from_s=max(r.window.from_s for r in results),
                          events=sum(r.window.events for r in results),
                          bytes=sum(r.window.bytes for r in results)),
            stopped_by=stopped_by,
            signal=next((r.signal for r in results if r.signal), None),
        )
