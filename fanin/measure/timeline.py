"""The run over time, for the HTML report and the JSON `timeline`: once a step (1 s, coarser
for long runs) each process notes its open streams, its running counts and, per histogram,
which HDR buckets gained values since the previous step (a sparse {bucket: count}), so that
worker processes merge exactly: counts are summed per wall-clock step, and the percentiles
of a step come from the merged buckets, never from averaged percentiles.

Sampling rides on the tickers' 100 ms `sample_active` call; its cost is one pass over the
counts of each histogram that changed, once a step (not per event)."""

from __future__ import annotations

from typing import Any

__all__ = ["Timeline", "merge_timelines", "timeline_rows", "SERIES_HISTOGRAMS", "MAX_SAMPLES"]

MAX_SAMPLES = 600  # beyond this the step doubles (adjacent samples merged): bounded memory for long runs
SERIES_HISTOGRAMS = ("ttfe", "gap", "latency", "lag", "ttft", "itl", "e2e")
CUMULATIVE = ("events", "bytes", "requests_completed", "requests_failed", "tokens", "lost", "duplicates",
              "connections_opened", "connections_failed", "stream_errors")
PERCENTILES = (50, 90, 99)


class Timeline:
    """One process's samples: {wall-clock second of the step's end: sample}."""

    def __init__(self) -> None:
        self.step = 1
        self.start: int | None = None  # the wall-clock second the first step starts at
        self.samples: dict[int, dict[str, Any]] = {}
        self._key: int | None = None
        self._prev: dict[str, tuple[int, list[int]]] = {}  # histogram -> (total, counts) at the last sample

    def maybe_sample(self, metrics, wall_s: float) -> None:
        key = int(wall_s) // self.step * self.step
        if key == self._key:
            return
        if self._key is None:  # the first call: the second the first step starts from
            self._key = self.start = key
            return
        self._key = key
        self.samples[key] = {
            "active": metrics.active,
            **{name: getattr(metrics, name) for name in CUMULATIVE},
            "errors": dict(metrics.errors),
            "hist": self._buckets(metrics),
        }
        if len(self.samples) > MAX_SAMPLES:
            self.step *= 2
            self.samples = rebucket(self.samples, self.step)

    def _buckets(self, metrics) -> dict[str, dict[int, int]]:
        """Per histogram, the buckets that gained values since the last call."""
        out: dict[str, dict[int, int]] = {}
        for name in SERIES_HISTOGRAMS:
            rec = metrics.hist.get(name)
            if rec is None:
                continue
            rec.flush()
            hist = rec.hist
            total = hist.total_count
            prev_total, prev = self._prev.get(name, (0, None))
            if total == prev_total and prev is not None:
                continue
            counts = list(hist.counts)
            if prev is None or total < prev_total:  # first look, or reset (the warm-up ended)
                gained = {i: n for i, n in enumerate(counts) if n}
            else:
                gained = {i: (n - p if n >= p else n) for i, (n, p) in enumerate(zip(counts, prev)) if n != p}
            self._prev[name] = (total, counts)
            if gained:
                out[name] = gained
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"step": self.step, "start": self.start, "samples": self.samples}


def _add_buckets(into: dict[str, dict[int, int]], more: dict[str, dict[int, int]]) -> None:
    for name, buckets in more.items():
        target = into.setdefault(name, {})
        for index, n in buckets.items():
            target[index] = target.get(index, 0) + n


def rebucket(samples: dict[int, dict[str, Any]], step: int) -> dict[int, dict[str, Any]]:
    """Samples on a coarser step: buckets added, running counts and open streams from the latest."""
    out: dict[int, dict[str, Any]] = {}
    for key in sorted(samples):
        sample = samples[key]
        new_key = key // step * step
        if new_key not in out:
            out[new_key] = {**sample, "hist": {}}
        else:
            out[new_key].update({k: v for k, v in sample.items() if k != "hist"})
        _add_buckets(out[new_key]["hist"], sample["hist"])
    return out


def merge_timelines(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Several processes' timelines as one: on the coarsest step, each process's running
    counts carried forward over the steps it missed, buckets added."""
    snapshots = [s for s in snapshots if s and s.get("start") is not None]
    if not snapshots:
        return {"step": 1, "start": None, "samples": {}}
    if len(snapshots) == 1:
        return snapshots[0]
    step = max(s["step"] for s in snapshots)
    per = [rebucket(s["samples"], step) if s["step"] != step else s["samples"] for s in snapshots]
    keys = sorted({k for samples in per for k in samples})
    last: list[dict[str, Any] | None] = [None] * len(per)
    merged: dict[int, dict[str, Any]] = {}
    for key in keys:
        sample: dict[str, Any] = {"active": 0, **dict.fromkeys(CUMULATIVE, 0), "errors": {}, "hist": {}}
        for i, samples in enumerate(per):
            if key in samples:
                last[i] = samples[key]
                _add_buckets(sample["hist"], samples[key]["hist"])
            held = last[i]
            if held is None:
                continue
            sample["active"] += held["active"]
            for name in CUMULATIVE:
                sample[name] += held.get(name, 0)
            for kind, n in held["errors"].items():
                sample["errors"][kind] = sample["errors"].get(kind, 0) + n
        merged[key] = sample
    start = min(s["start"] for s in snapshots) // step * step
    return {"step": step, "start": start, "samples": merged}


def _percentiles(buckets: dict[int, int], template) -> dict[str, float]:
    total = sum(buckets.values())
    out: dict[str, float] = {"count": total}
    running = 0
    wanted = list(PERCENTILES)
    for index in sorted(buckets):
        running += buckets[index]
        while wanted and running >= max(int(wanted[0] * total / 100 + 0.5), 1):
            value = template.get_highest_equivalent_value(template.get_value_from_index(index))
            out[f"p{wanted.pop(0)}"] = round(value / 1000, 3)
    return out


def timeline_rows(timeline: dict[str, Any], template) -> list[dict[str, Any]]:
    """The JSON `timeline`: per step, seconds since the start, open streams, rates per second,
    new errors by kind, and the count and p50/p90/p99 (ms) of what each histogram recorded in that step.
    `template` is an empty histogram of the run's layout (bucket index -> value)."""
    if not timeline.get("samples"):
        return []
    start = timeline["start"]
    prev: dict[str, Any] = {name: 0 for name in CUMULATIVE}
    prev_errors: dict[str, int] = {}
    prev_key = start
    rows = []
    for key in sorted(timeline["samples"]):
        sample = timeline["samples"][key]
        span = max(key - prev_key, 1)
        errors = {kind: n - prev_errors.get(kind, 0) for kind, n in sample["errors"].items()
                  if n > prev_errors.get(kind, 0)}
        rows.append({
            "t_s": key - start,
            "active": sample["active"],
            "events_per_s": round((sample["events"] - prev["events"]) / span, 1),
            "bytes_per_s": round((sample["bytes"] - prev["bytes"]) / span, 1),
            "requests_per_s": round((sample["requests_completed"] - prev["requests_completed"]) / span, 2),
            "tokens_per_s": round((sample["tokens"] - prev["tokens"]) / span, 1),
            "lost": sample["lost"] - prev["lost"],
            "errors": errors,
            "ms": {name: _percentiles(buckets, template) for name, buckets in sample["hist"].items()},
        })
        prev, prev_errors, prev_key = sample, sample["errors"], key
    return rows
