"""`fanin load` in streams mode (the default): the plans (one per process) built from the
options, the run, and its report; `finish` writes it and decides the exit status."""

from __future__ import annotations

import resource
from typing import Any

from fanin.errors import UsageError
from fanin.load.options import LoadOptions

__all__ = ["run_streams", "stream_plans", "FD_RESERVE"]

FD_RESERVE = 64  # files a process needs besides its sockets (stdio, event loop, imports)


def _start_offsets(total: int, ramp_up: float, rate: float | None) -> list[float]:
    """When each global slot opens: evenly over the ramp-up, and no faster than --rate."""
    step = ramp_up / total if ramp_up > 0 else 0.0
    if rate:
        step = max(step, 1.0 / rate)
    return [i * step for i in range(total)]


def _raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit toward `needed` (up to the hard limit); returns the
    limit. Worker processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def _check_reachable(connections: int, workers: int, urls: int) -> list[str]:
    """Fail fast when -c cannot be reached; return warnings about limits that may bite."""
    per_process = -(-connections // workers)
    needed = per_process + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else 1 << 30
    if needed > ceiling:
        most = max(0, ceiling - FD_RESERVE) * workers
        raise UsageError(
            f"-c {connections} cannot be reached: each process needs about {needed} open files but the hard "
            f"limit is {ceiling} (at most ~{most} connections with --workers {workers}); raise it "
            f"(ulimit -Hn) or add --workers"
        )
    warnings = []
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        ports = high - low + 1
        per_target = -(-connections // urls)
        if per_target > ports:
            warnings.append(
                f"{per_target} connections per URL exceed the {ports} local ports available per "
                f"server address; connections beyond that will fail"
            )
    except (OSError, ValueError):
        pass
    return warnings


def stream_plans(options: LoadOptions) -> list:
    """One LoadPlan per process: slot i runs in process i mod K and opens at its offset."""
    from fanin.load.runner import LoadPlan

    total, workers = options.users, options.process_count
    duration = options.run_duration or 0.0
    offsets = _start_offsets(total, options.ramp_up or 0.0, options.rate)
    config = options.stream_config()
    plans = []
    for index in range(workers):
        slots = list(range(index, total, workers))
        plans.append(LoadPlan(
            requests=list(options.requests), config=config, slots=slots,
            start_offsets=[offsets[s] for s in slots], total_slots=total, duration=duration,
            latency_path=options.latency_field, latency_unit=options.latency_unit, warmup=options.warmup_s,
            sequence=options.sequence, seq_field=options.seq_field, http_client=options.client_kind,
        ))
    return plans


def _settings(options: LoadOptions) -> dict[str, Any]:
    config = options.stream_config()
    return {
        "connections": options.users,
        "duration_s": options.run_duration,
        "ramp_up_s": options.ramp_up or 0.0,
        "rate": options.rate,
        "workers": options.process_count,
        "method": options.method,
        "reconnect": config.reconnect,
        "retries": config.retries,
        "connect_timeout_s": config.connect_timeout,
        "idle_timeout_s": config.idle_timeout,
        "latency_field": options.latency_field_text,
        "latency_unit": options.latency_unit,
        "warmup_s": options.warmup_s,
        "sequence": options.sequence,
        "http_client": options.client_kind,
    }


def run_streams(options: LoadOptions) -> int:
    from fanin.load.display import Progress
    from fanin.load.finish import finish, judge
    from fanin.load.pool import run_plans
    from fanin.measure.report import build_report

    total, workers, duration = options.users, options.process_count, options.run_duration or 0.0
    warnings = _check_reachable(total, workers, len(options.requests))
    limit = _raise_fd_limit(-(-total // workers) + FD_RESERVE)
    plans = stream_plans(options)
    last_start = max((max(p.start_offsets, default=0.0) for p in plans), default=0.0)
    if last_start >= duration:
        warnings.append(
            f"--ramp-up/--rate open the last connection at {last_start:.1f} s, after the {duration:g} s run ends"
        )
    with Progress(options.progress, duration, total) as display:
        result = run_plans(plans, progress=display.update, deadline_s=duration + 60 + total / 500)
    metrics = result.metrics
    client = {**result.client, "nofile_limit": limit}
    if metrics.peak_active < total:
        sampled = " (sampled every 100 ms across the worker processes)" if workers > 1 else ""
        noun = "connection" if total == 1 else "connections"
        warnings.append(f"only {metrics.peak_active:,} of the {total:,} requested {noun} were open at once{sampled}")
    report = build_report(
        metrics,
        targets=[r.display_url for r in options.requests],  # masked by the engine's secrets boundary
        settings=_settings(options),
        elapsed_s=result.elapsed,
        window=result.window.as_dict(),
        client=client,
        warnings=warnings,
    )
    if options.sequence is not None:
        from fanin.measure.loss import delivery_section

        report["delivery"] = delivery_section(metrics, metrics.loss_listed, options.sequence)
    judge(report, result, options)
    return finish(report, options)

