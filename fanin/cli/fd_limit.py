"""Open files: every stream holds a socket, so N sources need N descriptors plus the
process's own. Checked before anything connects, as `fanin load` does: the soft limit is
raised as far as the hard limit allows, and when that is still too few for every source
the command stops with one line and exit 2. (Capping how many streams are open at once
would leave endless streams never read, so `fanin stream` does not.)"""

from __future__ import annotations

import resource

from fanin.errors import UsageError

__all__ = ["FD_RESERVE", "raise_soft_limit", "check_open_files"]

FD_RESERVE = 32  # measured: about 15 besides the sockets (stdio, the loop, uvloop); room for resolver threads and lazy imports


def raise_soft_limit(needed: int | None = None) -> int:
    """Raise the soft RLIMIT_NOFILE toward `needed` (None: as far as allowed), never above
    the hard limit and never lower; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    ceiling = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    target = ceiling if needed is None else min(max(needed, soft), ceiling)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def check_open_files(sources: int) -> None:
    """UsageError (one line, exit 2) when `sources` streams cannot all be open at once."""
    needed = sources + FD_RESERVE
    soft = raise_soft_limit(needed)
    if soft < needed:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        most = max(0, soft - FD_RESERVE)
        raise UsageError(
            f"{sources} sources need about {needed} open files, but the limit is {soft}"
            + (f" (hard limit {hard})" if hard != resource.RLIM_INFINITY else "")
            + f": raise it (ulimit -n {needed}) or give at most {most} URLs per command")
