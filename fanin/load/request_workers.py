"""`fanin load --mode requests --workers K`: how one request-mode load is split over K
processes (run by pool.py, merged into one report with HDR histograms added exactly).

The split keeps the load model intact: closed-loop users and -n are shared out as evenly as
possible; in the open loop each process runs R/K requests per second, with constant arrivals
interleaved (process i is due at i/R, i/R + K/R, ...; together exactly every 1/R) and Poisson
arrivals from seed + i (a sum of Poisson processes is one of rate R). --max-in-flight is
shared out too."""

from __future__ import annotations

from typing import Any

__all__ = ["shares", "worker_shares"]


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
