"""Run a load test's plans (either mode): one plan in this process, or one process per plan
(`--workers`), merged into one `RunResult`.

The worker processes are given their finished plan (nothing is parsed or validated again),
import and prepare, then all start on one signal so their windows line up. Ctrl-C and
SIGTERM stop the run gracefully wherever it runs: the parent catches them and tells every
worker through a shared event (the workers ignore both, so a Ctrl-C sent to the whole
terminal process group is handled once), and the result says it was interrupted."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue as queue_module
import signal
import time
from typing import Any, Callable

from fanin.errors import FaninError
from fanin.measure.metrics import LoadMetrics
from fanin.wording import plural
from fanin.load.result import INTERRUPT, RunResult

__all__ = ["run_plans", "runner_for"]

Progress = Callable[[LoadMetrics, float], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
READY_TIMEOUT_S = 120
STOP_POLL_S = 0.1


def runner_for(plan: Any, progress: Progress | None):
    """The runner of a plan's mode."""
    from fanin.load.runner import LoadPlan, LoadRunner

    if isinstance(plan, LoadPlan):
        return LoadRunner(plan, progress)
    from fanin.load.requests_mode import RequestRunner

    return RequestRunner(plan, progress)


def _streams(plan: Any) -> int:
    slots = getattr(plan, "slots", None)
    return len(slots) if slots is not None else plan.users or plan.max_in_flight


def run_plans(plans: list[Any], *, progress: Progress, deadline_s: float) -> RunResult:
    """Run every plan to its end and return the merged result. `deadline_s` bounds how long
    the parent waits for worker processes after they all started."""
    if len(plans) == 1:
        return _run_here(plans[0], progress)
    return _run_pool(plans, progress, deadline_s)


def _run_here(plan: Any, progress: Progress) -> RunResult:
    """One plan in this process, with the CLI's stop signals (runloop.StopSignals): the
    first Ctrl-C or SIGTERM stops the runner gracefully, a second one stops at once."""
    from fanin.cli import runloop

    runner = runner_for(plan, progress)
    signals = runloop.StopSignals(on_stop=lambda: runner.stop(interrupted=True))
    result = runloop.run(runner.run(), streams=_streams(plan), signals=signals)
    if signals.received is not None:
        result.stopped_by, result.signal = INTERRUPT, signal.Signals(signals.received).name
    return result


def _worker_main(plan: Any, index: int, go, stop, channel) -> None:
    """One process: prepare, wait for the common start, run, send snapshots and the result."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)  # the parent catches them and sets `stop`
    try:
        from fanin.cli import runloop

        def progress(metrics: LoadMetrics, elapsed: float) -> None:
            channel.put(("progress", index, metrics.snapshot()))

        async def run() -> RunResult:
            runner = runner_for(plan, progress)

            async def watch() -> None:
                while not stop.is_set():  # noqa: ASYNC110 (a process-shared Event cannot be awaited)
                    await asyncio.sleep(STOP_POLL_S)
                runner.stop(interrupted=True)

            watcher = asyncio.create_task(watch())
            try:
                return await runner.run()
            finally:
                watcher.cancel()

        channel.put(("ready", index, None))
        if not go.wait(timeout=READY_TIMEOUT_S):
            raise FaninError("no start signal from the parent process")
        channel.put(("final", index, runloop.run(run(), streams=_streams(plan))))
    except BaseException as exc:  # report, never a traceback
        channel.put(("crash", index, f"{exc.__class__.__name__}: {exc}"))


def _run_pool(plans: list[Any], progress: Progress, deadline_s: float) -> RunResult:
    ctx = multiprocessing.get_context("spawn")
    channel, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_worker_main, args=(plan, i, go, stop, channel), daemon=True)
             for i, plan in enumerate(plans)]
    caught: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        caught.append(signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    ready: set[int] = set()
    latest: dict[int, dict] = {}
    finals: dict[int, RunResult] = {}
    try:
        for proc in procs:
            proc.start()
        limit = time.monotonic() + READY_TIMEOUT_S
        started = None
        while len(finals) < len(procs):
            try:
                kind, index, payload = channel.get(timeout=1.0)
            except queue_module.Empty:
                if time.monotonic() > limit or not any(p.is_alive() for p in procs):
                    missing = len(procs) - len(finals)
                    raise FaninError(f"{plural(missing, 'load worker')} stopped without a report") from None
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
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop.set()
        go.set()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()  # (it ignores SIGTERM)
    result = RunResult.merge([finals[i] for i in sorted(finals)])
    if caught:
        result.stopped_by, result.signal = INTERRUPT, caught[0]
    return result
