"""Counters and HDR histograms for `fanin load`, cheap to record and mergeable across workers.

Recording goes through `Recorder`: the hot path only appends an int to a list; once a
second (and at the end) `flush()` folds the pending values into the HDR histogram, counting
repeated values once. That keeps the client from becoming the bottleneck it is measuring.
Workers ship `snapshot()` dicts (counters + hdrhistogram's compressed encoding) to the parent,
which rebuilds one `LoadMetrics` with `LoadMetrics.merge`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["HISTOGRAMS", "REQUEST_HISTOGRAMS", "RATE_HISTOGRAMS", "DELIVERY_HISTOGRAMS", "COUNTERS", "Recorder",
           "LoadMetrics", "new_histogram",
           "record_corrected", "peak_of_timelines", "ACTIVE_SAMPLE_S"]

# Every histogram holds microseconds, from 1 µs to 1 h at 3 significant figures.
HIGHEST_US = 3_600_000_000
HISTOGRAMS = ("connect", "ttfe", "gap", "latency", "lag")
# Request mode (`--mode requests`): per-request time to first token, inter-token latency, time
# per output token, end-to-end latency, and how late the open loop started each request.
REQUEST_HISTOGRAMS = ("ttft", "itl", "tpot", "e2e", "start_delay", "ttst", "queue")
# Request mode, not times: each request's output speed after its first token, kept in
# thousandths of a token per second so that summary_ms() reads it in tokens per second.
RATE_HISTOGRAMS = ("user_tps",)
# Push-stream delivery (`--seq-ids`/`--seq-field`, see loss.py): time from a dropped stream to
# its next delivered event.
DELIVERY_HISTOGRAMS = ("resume",)
ACTIVE_SAMPLE_S = 0.1  # open streams are sampled on this wall-clock grid, so workers line up
COUNTERS = (
    "connections_opened",  # responses accepted (200 + text/event-stream)
    "connections_failed",  # attempts that failed before the stream opened
    "stream_errors",  # failures after the stream opened (truncated, idle, network)
    "reconnects",  # reconnect attempts made by the engine
    "streams_completed",  # streams that ended cleanly (the slot then opens a new one)
    "streams_failed",  # streams the engine gave up on (retries exhausted or not retryable)
    "events",
    "bytes",
    "latency_missing",  # events without a usable --latency-field value
    "latency_negative",  # send timestamp after arrival (clock skew); recorded as 0
    # request mode (measured requests only: started after the warm-up)
    "requests_completed",  # streams read to their end (or --stop-on) with at least one token
    "requests_failed",  # HTTP errors, network failures, cut streams, streams without a token
    "requests_not_started",  # open loop: due while --max-in-flight requests were running
    "requests_interrupted",  # still running when the grace period after the run ended
    "requests_warmup",  # started during the warm-up: run, not measured
    "goodput",  # completed requests that met every --slo
    "tokens",  # output tokens (the server's usage count with --usage-field, else counted events)
    "usage_missing",  # completed requests whose last events held no --usage-field number
    "input_tokens",  # prompt tokens the server reported (usage), completed requests
    "tokens_by_usage",  # completed requests whose output tokens came from the server's usage
    "tokens_by_chunks",  # ... counted one per content chunk (no usage, no --tokenizer)
    "tokens_by_tokenizer",  # ... counted by --tokenizer over the streamed text
    # delivery accounting (--seq-ids / --seq-field; see loss.py)
    "seq_streams",  # streams whose events carried sequence numbers
    "lost",  # numbers skipped (a gap) and never delivered later
    "duplicates",  # numbers delivered again
    "reordered",  # numbers that arrived after a later one (first counted lost)
    "seq_missing",  # events without a usable sequence number
)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


def record_corrected(pending: list[int], value_us: int, interval_us: int) -> None:
    """Record a tick that came `value_us` late, plus the ticks that a stall swallowed.

    A ticker that wakes every `interval_us` and is held up for 1 s takes one late sample, not
    the ten it missed, so a rare long stall vanishes from the percentiles (coordinated
    omission). Like HdrHistogram's corrected recording, credit each missed tick with the lag
    it would have seen: value, value - interval, ... while above the interval."""
    pending.append(value_us)
    value_us -= interval_us
    while value_us >= interval_us:
        pending.append(value_us)
        value_us -= interval_us


def peak_of_timelines(timelines: list[dict[int, int]]) -> int:
    """The most streams open at one sampled instant across processes.

    Each timeline maps a wall-clock sample slot to the streams one process had open then; a
    process missing a slot (its ticker ran late) counts with its previous sample. Summing
    each process's own peak would be an upper bound, reached only if all peaked at once."""
    slots = sorted({slot for timeline in timelines for slot in timeline})
    last = [0] * len(timelines)
    peak = 0
    for slot in slots:
        for i, timeline in enumerate(timelines):
            if slot in timeline:
                last[i] = timeline[slot]
        peak = max(peak, sum(last))
    return peak


class Recorder:
    """An HDR histogram fed in bulk: `pending.append(us)` in the hot path, `flush()` later."""

    __slots__ = ("hist", "pending", "zeros", "_mask", "_unit", "_half_mag", "_half", "_base")

    def __init__(self, hist: HdrHistogram | None = None) -> None:
        self.hist = hist if hist is not None else new_histogram()
        self.pending: list[int] = []  # the hot path may keep a reference: flush() empties it in place
        self.zeros = 0  # a cheap way to record many zeros (events that arrived in the same read)
        h = self.hist
        self._mask = h.sub_bucket_mask
        self._unit = h.unit_magnitude
        self._half_mag = h.sub_bucket_half_count_magnitude
        self._half = h.sub_bucket_half_count
        self._base = h.unit_magnitude + h.sub_bucket_half_count_magnitude + 1

    def record(self, value_us: int, count: int = 1) -> None:
        """Record now (for rare values such as connect times, or many equal values at once)."""
        self.hist.record_value(min(max(int(value_us), 0), HIGHEST_US), count)

    def flush(self) -> None:
        """Fold pending values into the histogram: one index computation per distinct value."""
        if self.zeros:
            self.hist.record_value(0, self.zeros)
            self.zeros = 0
        if not self.pending:
            return
        pending = self.pending.copy()
        self.pending.clear()
        h = self.hist
        counts = h.counts
        mask, unit, half_mag, half, base = self._mask, self._unit, self._half_mag, self._half, self._base
        low = high = None
        total = 0
        for value, n in Counter(pending).items():
            if value < 0:
                value = 0
            elif value > HIGHEST_US:
                value = HIGHEST_US
            bucket = (value | mask).bit_length() - base
            counts[((bucket + 1) << half_mag) + (value >> (bucket + unit)) - half] += n
            total += n
            if low is None or value < low:
                low = value
            if high is None or value > high:
                high = value
        h.total_count += total
        h.min_value = min(h.min_value, low)
        h.max_value = max(h.max_value, high)

    @property
    def count(self) -> int:
        return self.hist.get_total_count() + len(self.pending) + self.zeros

    def summary_ms(self) -> dict[str, float | int | None]:
        """count, mean and p50/p90/p95/p99/max in milliseconds (3 decimals).

        One pass over the non-empty buckets; hdrh's own iterators take ~0.3 s per histogram
        for the mean alone, which would stall a once-a-second progress display."""
        self.flush()
        h = self.hist
        total = h.get_total_count()
        out: dict[str, float | int | None] = {"count": total}
        keys = ("p50", "p90", "p95", "p99")
        if not total:
            out.update(dict.fromkeys(("mean", *keys, "max")))
            return out
        targets = [max(int(p * total / 100 + 0.5), 1) for p in (50, 90, 95, 99)]
        found: list[int] = []
        running = 0
        weighted = 0.0
        for index, n in enumerate(h.counts):
            if not n:
                continue
            running += n
            low = h.get_value_from_index(index)
            high = h.get_highest_equivalent_value(low)
            weighted += n * ((low + high + 1) / 2 if high > low else low)
            while len(found) < len(targets) and running >= targets[len(found)]:
                found.append(high)
        out["mean"] = round(weighted / total / 1000, 3)
        out.update({k: round(v / 1000, 3) for k, v in zip(keys, found)})
        out["max"] = round(h.get_highest_equivalent_value(h.get_max_value()) / 1000, 3)
        return out

    def percentile_ms(self, p: float) -> float | None:
        self.flush()
        if not self.hist.get_total_count():
            return None
        return self.hist.get_value_at_percentile(p) / 1000


class LoadMetrics:
    """Everything one load run measures (one process, or the merge of several)."""

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.errors: Counter[str] = Counter()  # kind -> count (engine's failure kinds)
        self.error_examples: dict[str, str] = {}  # kind -> one message, for the report
        self.hist: dict[str, Recorder] = {
            name: Recorder() for name in (*HISTOGRAMS, *REQUEST_HISTOGRAMS, *RATE_HISTOGRAMS, *DELIVERY_HISTOGRAMS)}
        self.loss_listed: list[list[int]] = []  # [slot, lost, duplicates, reordered] per stream with an anomaly
        self.active = 0  # streams open right now
        self.peak_active = 0  # exact in one process; across processes, the peak of the sampled sums
        self.active_timeline: dict[int, int] = {}  # wall-clock slot (ACTIVE_SAMPLE_S) -> open streams
        from fanin.measure.timeline import Timeline

        self.timeline = Timeline()  # the run over time (the HTML report, the JSON timeline)
        self.merged_timeline: dict[str, Any] | None = None  # set by merge()

    def sample_active(self, wall_s: float) -> None:
        """Note how many streams are open now, on the shared wall-clock grid (see merge)."""
        self.active_timeline[int(wall_s / ACTIVE_SAMPLE_S)] = self.active
        self.timeline.maybe_sample(self, wall_s)

    def timeline_snapshot(self) -> dict[str, Any]:
        """This process's timeline, or the merged one of several processes."""
        return self.merged_timeline if self.merged_timeline is not None else self.timeline.snapshot()

    def flush(self) -> None:
        for rec in self.hist.values():
            rec.flush()

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def snapshot(self) -> dict[str, Any]:
        """A picklable copy for the parent process: counters, errors, encoded histograms."""
        self.flush()
        return {
            "counters": self.counters(),
            "errors": dict(self.errors),
            "error_examples": dict(self.error_examples),
            "hist": {name: rec.hist.encode() for name, rec in self.hist.items()},
            "active": self.active,
            "peak_active": self.peak_active,
            "active_timeline": dict(self.active_timeline),
            "loss_listed": list(self.loss_listed),
            "timeline": self.timeline_snapshot(),
        }

    @classmethod
    def merge(cls, snapshots: list[dict[str, Any]]) -> "LoadMetrics":
        """One LoadMetrics from the snapshots of several workers (histograms added exactly)."""
        merged = cls()
        timelines = []
        for snap in snapshots:
            for name, value in snap["counters"].items():
                setattr(merged, name, getattr(merged, name) + value)
            merged.errors.update(snap["errors"])
            for kind, message in snap["error_examples"].items():
                merged.error_examples.setdefault(kind, message)
            for name, blob in snap["hist"].items():
                if name in merged.hist:
                    merged.hist[name].hist.decode_and_add(blob)
            merged.loss_listed.extend(snap.get("loss_listed", ()))
            merged.active += snap["active"]
            timelines.append(snap.get("active_timeline") or {})
        from fanin.measure.timeline import merge_timelines

        merged.merged_timeline = merge_timelines([snap.get("timeline") for snap in snapshots])
        if len(snapshots) == 1:
            merged.peak_active = snapshots[0]["peak_active"]  # exact: counted on every open
            merged.active_timeline = dict(timelines[0])
        elif snapshots:
            # Never more than the sum of the processes' own peaks (the old, upper-bound answer);
            # a snapshot without samples (an older producer) can only add its own peak.
            sampled = [t for t in timelines if t]
            unsampled = sum(snap["peak_active"] for snap, t in zip(snapshots, timelines) if not t)
            bound = sum(snap["peak_active"] for snap in snapshots)
            merged.peak_active = min(peak_of_timelines(sampled) + unsampled, bound)
            for timeline in timelines:
                for slot, n in timeline.items():
                    merged.active_timeline[slot] = merged.active_timeline.get(slot, 0) + n
        return merged


def merge_clients(clients: list[dict[str, Any]]) -> dict[str, Any]:
    """The `client` section of several processes as one."""
    return {
        "workers": len(clients),
        "cpu_percent_max": max(c["cpu_percent_max"] for c in clients),
        "cpu_percent_mean": round(sum(c["cpu_percent_mean"] for c in clients) / len(clients), 1),
        "cpu_seconds": round(sum(c["cpu_seconds"] for c in clients), 3),
        "rss_bytes": sum(c["rss_bytes"] for c in clients),
        "rss_baseline_bytes": sum(c["rss_baseline_bytes"] for c in clients),
        "rss_growth_bytes": sum(c["rss_growth_bytes"] for c in clients),
    }
