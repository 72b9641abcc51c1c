"""`fanin load --mode requests --workers K`: one request-mode load split over K processes,
for loads past one process's ceiling, merged into one report (HDR histograms added exactly).

The split keeps the load model intact: closed-loop users and -n are shared out as evenly as
possible; in the open loop each process runs R/K requests per second, with constant arrivals
interleaved (process i is due at i/R, i/R + K/R, ...; together exactly every 1/R) and Poisson
arrivals from seed + i (a sum of Poisson processes is one of rate R). --max-in-flight is
shared out too. The processes import and prepare first, then all start on one signal, so their
windows line up (active counts are merged on the wall-clock grid, see metrics.py)."""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import signal
import time
from typing import Any, Callable

from fanin.errors import FaninError
from fanin.load.metrics import LoadMetrics, merge_clients
from fanin.wording import plural

__all__ = ["shares", "worker_shares", "run_request_workers"]


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole shares differing by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def worker_shares(workers: int, *, users: int | None, rate: float | None, limit: int | None,
                  max_in_flight: int, seed: int | None) -> list[dict[str, Any]]:
    """What each process runs (fewer processes than asked when there is not enough to split)."""
    caps = [workers, max_in_flight]
    if users is not None:
        caps.append(users)
    if limit is not None:
        caps.append(limit)
    k = max(1, min(caps))
    limits = shares(limit, k) if limit is not None else [None] * k
    flights = shares(max_in_flight, k)
    out = []
    for i in range(k):
        part: dict[str, Any] = {"limit": limits[i], "max_in_flight": flights[i],
                                "seed": None if seed is None else seed + i, "offset": 0.0}
        if users is not None:
            part.update(users=shares(users, k)[i], rate=None)
        else:
            part.update(users=None, rate=rate / k, offset=i / rate)
        out.append(part)
    return out


def _worker_main(build_plan: Callable[[dict], Any], part: dict, index: int, go, channel) -> None:
    """One process: prepare, wait for the common start, run, send snapshots and the result."""
    try:
        from fanin.cli import runloop
        from fanin.load.requests_mode import RequestRunner

        plan = build_plan(part)

        async def run():
            runner = RequestRunner(plan, lambda metrics, elapsed: channel.put(("progress", index,
                                                                              metrics.snapshot())))
            return await runner.run()

        channel.put(("ready", index, None))
        if not go.wait(timeout=120):
            raise FaninError("no start signal from the parent process")
        result = runloop.run(run(), streams=plan.users or plan.max_in_flight)
        channel.put(("final", index, result))
    except BaseException as exc:  # report, never a traceback
        channel.put(("crash", index, f"{exc.__class__.__name__}: {exc}"))


def run_request_workers(build_plan: Callable[[dict], Any], parts: list[dict], *, deadline_s: float,
                        progress: Callable[[LoadMetrics, float], None]) -> dict[str, Any]:
    """Run one plan per part in its own process; the merged result, shaped like one runner's.

    `build_plan(part)` must be picklable (a module-level function or functools.partial)."""
    ctx = multiprocessing.get_context("spawn")
    channel, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker_main, args=(build_plan, part, i, go, channel), daemon=True)
             for i, part in enumerate(parts)]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the workers stop themselves and report
    ready: set[int] = set()
    latest: dict[int, dict] = {}
    finals: dict[int, dict] = {}
    try:
        for proc in procs:
            proc.start()
        limit = time.monotonic() + 120
        started = None
        while len(finals) < len(procs):
            try:
                kind, index, payload = channel.get(timeout=1.0)
            except queue_module.Empty:
                if time.monotonic() > limit or not any(p.is_alive() for p in procs):
                    raise FaninError(f"{plural(len(procs) - len(finals), 'load worker')} stopped without a report") from None
                continue
            if kind == "crash":
                raise FaninError(f"load worker {index} failed: {payload}")
            if kind == "ready":
                ready.add(index)
                if len(ready) == len(procs):
                    started = time.monotonic()
                    limit = started + deadline_s
                    go.set()
            elif kind == "final":
                finals[index] = payload
            else:
                latest[index] = payload
                if len(latest) == len(procs) and started is not None:
                    progress(LoadMetrics.merge(list(latest.values())), time.monotonic() - started)
    finally:
        signal.signal(signal.SIGINT, previous)
        go.set()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    results = [finals[i] for i in sorted(finals)]
    merged = LoadMetrics.merge([r["snapshot"] for r in results])
    windows = [r["window"] for r in results]
    return {
        "metrics": merged,
        "client": merge_clients([r["client"] for r in results]),
        "elapsed": max(r["elapsed"] for r in results),
        "window": {"from_s": max(w["from_s"] for w in windows), "events": sum(w["events"] for w in windows),
                   "bytes": sum(w["bytes"] for w in windows)},
    }
