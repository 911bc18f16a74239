"""The capacity report's charts: matplotlib figures rendered as inline SVG.

Matplotlib's object API only (no pyplot state: safe in a worker), fixed margins (no layout
engine) and a fixed SVG hash salt without a date, so the same figures give the same SVG bytes.
:func:`render_charts` returns every chart that has data, keyed by name.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from pacs.reports.units import GB, TB, fmt_bytes

if TYPE_CHECKING:
    from pacs.reports.figures import CapacityReport

_PALETTE = ("#1f6feb", "#d1495b", "#2a9d8f", "#e9a03b", "#6f42c1", "#8d6e63", "#5c7080", "#00a6d6")


def _figure(width: float = 9.0, height: float = 3.6, left: float = 0.8) -> Any:
    """A figure with fixed margins in inches (a layout engine measures every text many times)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=left / width, right=1 - 0.2 / width, top=1 - 0.4 / height, bottom=0.55 / height)
    return fig


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pacs-capacity"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _style(ax: Any, ylabel: str) -> None:
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", color="#d0d7de", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)


def render_charts(report: CapacityReport) -> dict[str, str]:
    """The report's charts as inline SVG, keyed by name (a chart without data is left out)."""
    charts: dict[str, str] = {}
    if report.history is not None and report.history[1].sum() > 0:
        charts["ingest"] = _chart_ingest(report)
    if report.projection is not None:
        charts["online_forecast"] = _chart_forecast(report)
    charts["tiers"] = _chart_tiers(report)
    monthly = report.tables["volume_monthly"]
    if monthly.num_rows:
        charts["modality_mix"] = _chart_modality_mix(report)
    if report.summary["catalogue"]["bytes"]:
        charts["what_if"] = _chart_what_if(report)
    return charts


def _chart_ingest(report: CapacityReport) -> str:
    assert report.history is not None
    first, y = report.history
    days = np.datetime64(first, "D") + np.arange(len(y))
    keep = days > np.datetime64(report.through - dt.timedelta(days=730), "D")
    fig = _figure()
    ax = fig.subplots()
    ax.fill_between(days[keep], y[keep] / GB, step="mid", color="#9ecae1", linewidth=0, label="bytes per day")
    if keep.sum() >= 28:
        avg = np.convolve(y, np.ones(28) / 28, mode="full")[: len(y)]
        ax.plot(days[keep], avg[keep] / GB, color=_PALETTE[0], linewidth=1.6, label="28-day mean")
    if report.projection is not None:
        ingest = report.projection.ingest
        smooth = np.convolve(ingest, np.ones(28) / 28, mode="valid") if len(ingest) >= 28 else ingest
        ax.plot(report.projection.dates[len(ingest) - len(smooth):], smooth / GB, color=_PALETTE[1], linewidth=1.6,
                linestyle="--", label="forecast (28-day mean)")
    _style(ax, "GB per day")
    ax.set_title("Daily ingest: the last two years and the forecast", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)


def _chart_forecast(report: CapacityReport) -> str:
    proj = report.projection
    assert proj is not None
    fig = _figure(height=4.0)
    ax = fig.subplots()
    dates = proj.dates
    ax.fill_between(dates, proj.low / TB, proj.high / TB, color=_PALETTE[0], alpha=0.18, linewidth=0,
                    label="95 % band")
    ax.plot(dates, proj.mean / TB, color=_PALETTE[0], linewidth=2.0, label="online usage (expected)")
    cap = report.tables["tier_utilisation"].to_pylist()[0]["capacity_bytes"]
    pol = report.policy
    if cap:
        ax.axhline(cap / TB, color="#24292f", linewidth=1.2, label=f"capacity {fmt_bytes(cap)}")
        if pol.high_watermark:
            ax.axhline(pol.high_watermark * cap / TB, color=_PALETTE[1], linewidth=1.2, linestyle="--",
                       label=f"high watermark {100 * pol.high_watermark:.0f} %")
        if pol.low_watermark and pol.low_watermark != pol.high_watermark:
            ax.axhline(pol.low_watermark * cap / TB, color=_PALETTE[3], linewidth=1.0, linestyle=":",
                       label=f"low watermark {100 * pol.low_watermark:.0f} %")
    crossing = (report.summary["forecast"].get("threshold_crossing") or {}).get("date")
    if crossing:
        day = np.datetime64(crossing, "D")
        ax.axvline(day, color=_PALETTE[1], linewidth=0.8)
        ax.annotate(f"crosses {crossing}", (day, proj.at(dt.date.fromisoformat(crossing)) / TB),
                    xytext=(6, -14), textcoords="offset points", fontsize=8, color=_PALETTE[1])
    _style(ax, "TB online")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Online tier: {report.settings.forecast_months}-month forecast under the current policy",
                 loc="left", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg(fig)


def _chart_tiers(report: CapacityReport) -> str:
    rows = report.tables["tier_utilisation"].to_pylist()
    fig = _figure(height=2.2, left=0.9)
    ax = fig.subplots()
    names = [r["tier"] for r in rows]
    used = [r["bytes"] / TB for r in rows]
    caps = [(r["capacity_bytes"] or 0) / TB for r in rows]
    y = np.arange(len(rows))
    ax.barh(y, caps, color="#eaeef2", edgecolor="#8c959f", height=0.6, label="capacity")
    ax.barh(y, used, color=[_PALETTE[0], _PALETTE[2]], height=0.6, label="used")
    for i, r in enumerate(rows):
        pct = r["utilisation_pct"]
        label = fmt_bytes(r["bytes"]) + (f" ({pct:.1f} %)" if pct is not None else " (no capacity set)")
        ax.annotate(label, (max(used[i], 0), i), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)
    if report.policy.high_watermark and caps[0]:
        ax.plot([report.policy.high_watermark * caps[0]] * 2, [-0.35, 0.35], color=_PALETTE[1], linewidth=1.5)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("TB")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Tier utilisation", loc="left", fontsize=11)
    return _svg(fig)


def _chart_modality_mix(report: CapacityReport) -> str:
    t = report.tables["volume_monthly"].to_pylist()
    rows = [r for r in t if r["dimension"] == "modality"]
    months = sorted({r["period_start"] for r in rows})[-36:]
    mods = sorted({r["value"] for r in rows})
    index = {m: i for i, m in enumerate(months)}
    data = np.zeros((len(mods), len(months)))
    for r in rows:
        if r["period_start"] in index:
            data[mods.index(r["value"]), index[r["period_start"]]] += r["bytes"] / TB
    fig = _figure()
    ax = fig.subplots()
    # Stacked steps, one polygon per modality (hundreds of bar patches make slow, heavy SVG).
    x = np.append(np.array(months, dtype="datetime64[M]"), np.datetime64(months[-1], "M") + 1).astype("datetime64[D]")
    bottom = np.zeros(len(months) + 1)
    for i, m in enumerate(mods):
        top = bottom + np.append(data[i], data[i][-1])
        ax.fill_between(x, bottom, top, step="post", color=_PALETTE[i % len(_PALETTE)], linewidth=0, label=m)
        bottom = top
    _style(ax, "TB per month")
    ax.set_title("Bytes per month by modality (last 36 months)", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=min(len(mods), 8))
    return _svg(fig)


def _chart_what_if(report: CapacityReport) -> str:
    rows = report.tables["what_if_retention"].to_pylist()
    fig = _figure(height=3.0)
    ax = fig.subplots()
    x = np.arange(len(rows))
    series = [("online_bytes_now", "now"), ("online_bytes_12_months", "in 12 months"),
              ("online_bytes_24_months", "in 24 months")]
    width = 0.26
    for i, (key, label) in enumerate(series):
        vals = [(r[key] or 0) / TB for r in rows]
        ax.bar(x + (i - 1) * width, vals, width=width, color=_PALETTE[i], label=label)
    cap = report.tables["tier_utilisation"].to_pylist()[0]["capacity_bytes"]
    if cap:
        ax.axhline(cap / TB, color="#24292f", linewidth=1.0, label="capacity")
    ax.set_xticks(x, [f"{r['online_retention_years']} y" for r in rows])
    ax.set_xlabel("online retention")
    _style(ax, "TB online")
    ax.set_title("What if: online bytes by years of online retention", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)
