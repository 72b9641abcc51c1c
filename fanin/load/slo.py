"""`--slo`: the per-request service-level objectives that decide goodput.

A request is good when it completed and met every SLO, as in vLLM's bench `--goodput`:
`ttft<500ms`, `tpot<=50ms`, `e2e<2s`, `itl<50ms` (every gap between its tokens) or a per-
request statistic of its gaps such as `itl_p99<50ms` or `itl_mean<20ms`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fanin.cli.durations import parse_duration
from fanin.errors import UsageError

__all__ = ["Slo", "parse_slo", "RequestTimes", "meets_all"]

METRICS = ("ttft", "tpot", "e2e", "itl")
ITL_STATS = ("max", "mean", "p50", "p90", "p95", "p99")
_SLO = re.compile(r"^\s*([a-z0-9]+)(?:_([a-z0-9]+))?\s*(<=|<)\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Slo:
    expr: str
    metric: str  # ttft | tpot | e2e | itl
    stat: str  # "" for ttft/tpot/e2e; max|mean|p50.. for itl ("itl" alone is max: every gap)
    op: str  # < or <=
    limit_us: float


def parse_slo(expr: str) -> Slo:
    match = _SLO.match(expr.lower())
    if not match:
        raise UsageError(f"--slo: cannot read {expr!r} (expected e.g. 'ttft<500ms' or 'itl_p99<50ms')")
    metric, stat, op, raw = match.groups()
    if metric not in METRICS:
        raise UsageError(f"--slo: unknown metric {metric!r} in {expr!r}; use {', '.join(METRICS)}")
    if stat and (metric != "itl" or stat not in ITL_STATS):
        raise UsageError(f"--slo: {metric}_{stat} is not a per-request metric; "
                         f"per-request statistics exist for itl only ({', '.join(ITL_STATS)})")
    limit = parse_duration(raw, option="--slo", default_unit="ms")
    return Slo(expr=expr.strip(), metric=metric, stat=stat or ("max" if metric == "itl" else ""),
               op=op, limit_us=limit * 1e6)


@dataclass
class RequestTimes:
    """One completed request's times in microseconds (tpot None with fewer than 2 tokens)."""

    ttft: int
    e2e: int
    tpot: float | None
    gaps: list[int]

    def value(self, slo: Slo) -> float | None:
        if slo.metric != "itl":
            return getattr(self, slo.metric)
        gaps = self.gaps
        if not gaps:
            return None
        if slo.stat == "max":
            return max(gaps)
        if slo.stat == "mean":
            return sum(gaps) / len(gaps)
        ordered = sorted(gaps)
        rank = max(int(float(slo.stat[1:]) / 100 * len(ordered) + 0.5), 1)  # nearest rank, as HDR does
        return ordered[min(rank, len(ordered)) - 1]


def meets_all(slos: list[Slo], times: RequestTimes) -> bool:
    """True when every SLO holds; a metric a request cannot have (no gaps, one token) holds."""
    for slo in slos:
        value = times.value(slo)
        if value is None:
            continue
        if value > slo.limit_us or (slo.op == "<" and value == slo.limit_us):
            return False
    return True
