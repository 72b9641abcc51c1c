"""The sweep chart: latency percentiles (top) and throughput with goodput (bottom) against
the load of each step, the knee marked, every axis labelled with its unit, so the PNG reads
without the table. matplotlib is optional: without it the sweep still runs and says why no
chart was drawn."""

from __future__ import annotations

from typing import Any

__all__ = ["ChartUnavailable", "draw_sweep_chart", "sweep_figure"]

AXIS = {"concurrency": "concurrency (closed-loop users)", "rate": "offered request rate (requests/s)"}
LINES = (  # (metric, statistic, label, style)
    ("ttft", "p50", "TTFT p50", "-o"),
    ("ttft", "p99", "TTFT p99", "--o"),
    ("itl", "p99", "ITL p99", "--s"),
    ("tpot", "p50", "TPOT p50", "-s"),
    ("e2e", "p50", "E2E p50", "-^"),
    ("e2e", "p99", "E2E p99", "--^"),
)


SLO_STYLES = ["-.", ":", (0, (5, 2, 1, 2, 1, 2))]


def _leading_digit(value: float) -> int:
    return int(f"{value:e}"[0]) if value > 0 else 0


def _ms_label(value: float, _position: object = None) -> str:
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"


class ChartUnavailable(Exception):
    """No chart could be drawn (matplotlib missing, or the file cannot be written)."""


def draw_sweep_chart(doc: dict[str, Any], path: str) -> None:
    """Draw the sweep's chart into the PNG file `path`."""
    fig = sweep_figure(doc)
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ChartUnavailable(f"no sweep chart: cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


def sweep_figure(doc: dict[str, Any]):
    """The chart as a matplotlib Figure (ChartUnavailable without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullLocator
    except ImportError:
        raise ChartUnavailable(
            "no sweep chart: matplotlib is not installed (pip install matplotlib, or "
            "pip install -r requirements-bench.txt); the JSON report and tables are complete"
        ) from None
    steps = doc["steps"]
    loads = [s["sweep"]["load"] for s in steps]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True, constrained_layout=True)
    for metric, stat, label, style in LINES:
        values = [s["latency_ms"][metric][stat] for s in steps]
        if any(v is not None for v in values):
            top.plot(loads, [float("nan") if v is None else v for v in values], style, label=label)
    for slo, style in zip(doc.get("slo_limits", []), SLO_STYLES * 4):
        # named in the legend, not written on the plot where it would sit on the lines
        top.axhline(slo["limit_ms"], color="grey", linestyle=style, linewidth=1, label=f"SLO {slo['expr']}")
    top.set_yscale("log")
    # the log axis labelled in plain milliseconds (5, 10, 20, 50, 100 ...), not powers of ten
    top.yaxis.set_major_formatter(FuncFormatter(_ms_label))
    top.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _ms_label(v) if _leading_digit(v) in (2, 5) else ""))
    top.set_ylabel("latency (ms, log scale)")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    bottom.plot(loads, [s["requests"]["per_s"] for s in steps], "-o", label="completed requests/s")
    if doc.get("slos"):  # goodput means nothing without an SLO (it would equal completed/s)
        bottom.plot(loads, [s["requests"]["goodput_per_s"] for s in steps], "-s",
                    label="goodput: requests/s meeting every SLO")
    if doc["parameter"] == "rate":
        bottom.plot(loads, loads, ":", color="grey", label="offered rate")
    bottom.set_ylabel("requests per second")
    bottom.set_xlabel(AXIS[doc["parameter"]])
    bottom.grid(True, alpha=0.3)
    bottom.set_ylim(bottom=0)
    knee = doc.get("knee")
    if knee is not None:
        for axis in (top, bottom):
            axis.axvline(knee["load"], color="red", linestyle=":", linewidth=1.2)
        bottom.plot([], [], ":", color="red", label=f"knee: {knee['load']:g}")
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    if len(loads) > 1 and loads[-1] / loads[0] >= 8:
        bottom.set_xscale("log", base=2)
    bottom.set_xticks(loads, [f"{v:g}" for v in loads])  # the loads run, never 1.5 users
    bottom.xaxis.set_minor_locator(NullLocator())
    targets = ", ".join(t.split("?")[0] for t in steps[0]["targets"]) if steps else ""
    parts = []
    if doc.get("slos"):
        parts.append(f">= {100 * doc['slo_attainment']:g}% of requests met {' and '.join(doc['slos'])}")
    if doc.get("thresholds"):
        parts.append(f"{' and '.join(doc['thresholds'])} held")
    subtitle = f"\nknee = highest load where {', '.join(parts)}" if parts else ""
    fig.suptitle(f"fanin load sweep: {targets}{subtitle}", fontsize=10)
    return fig
