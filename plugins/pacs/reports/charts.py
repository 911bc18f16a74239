"""The capacity report's charts: matplotlib figures rendered as inline SVG.

Matplotlib's object API only (no pyplot state: safe in a worker), fixed margins (no layout
engine) and a fixed SVG hash salt without a date, so the same figures give the same SVG bytes.
Every byte axis reads in the decimal unit its data reach (:func:`pacs.reports.units.axis_unit`),
in plain numbers (no offset or scientific notation), and reaches the capacity where one is
drawn; tiers are drawn against their own capacity. History stops at the report's date; the
forecast, drawn as such, starts there. :func:`render_charts` returns every chart that has data,
keyed by name.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from pacs.reports import forecast
from pacs.reports.units import axis_unit, fmt_bytes

if TYPE_CHECKING:
    from pacs.reports.figures import CapacityReport

_PALETTE = ("#1f6feb", "#d1495b", "#2a9d8f", "#e9a03b", "#6f42c1", "#8d6e63", "#5c7080", "#00a6d6")
_HISTORY_MONTHS = 36


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
    from matplotlib.ticker import ScalarFormatter

    plain = ScalarFormatter(useOffset=False)
    plain.set_scientific(False)
    ax.yaxis.set_major_formatter(plain)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", color="#d0d7de", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)


def _top(*values: Any) -> float:
    """The largest of ``values`` (arrays or numbers; None and NaN ignored), at least 1."""
    found = [float(np.nanmax(v)) for v in values if v is not None and np.size(v) and not np.all(np.isnan(v))]
    return max([*found, 1.0])


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


def _monthly_history(report: CapacityReport) -> tuple[np.ndarray, np.ndarray]:
    """First day and bytes of each month of the ingest history (the last one may be partial)."""
    assert report.history is not None
    first, y = report.history
    totals = np.bincount(forecast.month_index(first, len(y)), weights=y)
    starts = (np.datetime64(first, "M") + np.arange(len(totals))).astype("datetime64[D]")
    return starts[-_HISTORY_MONTHS:], totals[-_HISTORY_MONTHS:]


def _chart_ingest(report: CapacityReport) -> str:
    """Ingest per month: the last three years, the forecast and last year's backtest."""
    starts, totals = _monthly_history(report)
    fc = report.tables["forecast_monthly"]
    f_starts = np.array(fc.column("month").to_pylist(), dtype="datetime64[D]")
    f_bytes = np.asarray(fc.column("ingest_bytes").to_pylist(), dtype=float)
    bt = report.backtest
    unit, size = axis_unit(_top(totals, f_bytes, None if bt is None else bt.ingest_model))
    fig = _figure()
    ax = fig.subplots()
    ax.bar(starts, totals / size, width=27, align="edge", color="#9ecae1", label="ingest per month")
    if len(f_starts):
        # The report's own month holds the history so far and the forecast of its remaining days.
        below = np.where(f_starts == starts[-1], totals[-1], 0.0) if len(starts) else np.zeros(len(f_starts))
        ax.bar(f_starts, f_bytes / size, bottom=below / size, width=27, align="edge", color=_PALETTE[1],
               alpha=0.55, label="forecast")
    if bt is not None and bt.ingest_mape_pct is not None:
        ax.plot(bt.months + np.timedelta64(14, "D"), bt.ingest_model / size, color="#24292f", linewidth=1.2,
                linestyle="--", marker="o", markersize=2.5,
                label=f"backtest: forecast from {bt.cut.isoformat()} (error {bt.ingest_mape_pct:.1f} %)")
    ax.axvline(np.datetime64(report.report_date, "D"), color="#57606a", linewidth=0.8)
    _style(ax, f"{unit} per month")
    ax.set_ylim(bottom=0, top=1.25 * _top(totals, f_bytes) / size)
    ax.set_title("Ingest per month: the last three years, the forecast and last year's backtest", loc="left",
                 fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
    return _svg(fig)


def _chart_forecast(report: CapacityReport) -> str:
    proj = report.projection
    assert proj is not None
    cap = report.tables["tier_utilisation"].to_pylist()[0]["capacity_bytes"]
    pol = report.policy
    # The band may be wide for a small archive: the axis shows the expected usage and the capacity.
    reach = _top(proj.mean, cap)
    top = 1.12 * max(reach, min(_top(proj.high), 1.5 * reach))
    unit, size = axis_unit(top)
    fig = _figure(height=4.0)
    ax = fig.subplots()
    dates = proj.dates
    ax.fill_between(dates, proj.low / size, np.minimum(proj.high, top) / size, color=_PALETTE[0], alpha=0.18,
                    linewidth=0, label="95 % band")
    ax.plot(dates, proj.mean / size, color=_PALETTE[0], linewidth=2.0, label="online usage (expected)")
    if cap:
        ax.axhline(cap / size, color="#24292f", linewidth=1.2, label=f"capacity {fmt_bytes(cap)}")
        if pol.high_watermark:
            ax.axhline(pol.high_watermark * cap / size, color=_PALETTE[1], linewidth=1.2, linestyle="--",
                       label=f"high watermark {100 * pol.high_watermark:.0f} %")
        if pol.low_watermark and pol.low_watermark != pol.high_watermark:
            ax.axhline(pol.low_watermark * cap / size, color=_PALETTE[3], linewidth=1.0, linestyle=":",
                       label=f"low watermark {100 * pol.low_watermark:.0f} %")
    crossing = (report.summary["forecast"].get("threshold_crossing") or {}).get("date")
    if crossing:
        day = np.datetime64(crossing, "D")
        ax.axvline(day, color=_PALETTE[1], linewidth=0.8)
        ax.annotate(f"crosses {crossing}", (day, proj.at(dt.date.fromisoformat(crossing)) / size),
                    xytext=(6, -14), textcoords="offset points", fontsize=8, color=_PALETTE[1])
    _style(ax, f"{unit} online")
    ax.set_ylim(bottom=0, top=top / size)
    ax.set_xlim(dates[0], dates[-1])
    ax.set_title(f"Online tier: {report.settings.forecast_months}-month forecast under the current policy",
                 loc="left", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False, ncols=2)
    return _svg(fig)


def _chart_tiers(report: CapacityReport) -> str:
    """Each tier's usage against its own capacity (percent), or in bytes when none is configured."""
    rows = report.tables["tier_utilisation"].to_pylist()
    fig = _figure(height=2.2, left=0.9)
    ax = fig.subplots()
    y = np.arange(len(rows))
    with_caps = any(r["capacity_bytes"] for r in rows)
    unit, size = axis_unit(_top([r["bytes"] for r in rows]))
    used = [(r["utilisation_pct"] or 0.0) if with_caps else r["bytes"] / size for r in rows]
    if with_caps:
        ax.barh(y, [100.0 if r["capacity_bytes"] else 0.0 for r in rows], color="#eaeef2", edgecolor="#8c959f",
                height=0.6, label="capacity")
    ax.barh(y, used, color=[_PALETTE[0], _PALETTE[2]][: len(rows)], height=0.6, label="used")
    for i, r in enumerate(rows):
        pct = r["utilisation_pct"]
        label = (f"{fmt_bytes(r['bytes'])} of {fmt_bytes(r['capacity_bytes'])} ({pct:.1f} %)" if pct is not None
                 else f"{fmt_bytes(r['bytes'])} (no capacity set)")
        ax.annotate(label, (max(used[i], 0), i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    if with_caps and report.policy.high_watermark and rows[0]["capacity_bytes"]:
        ax.plot([100 * report.policy.high_watermark] * 2, [-0.35, 0.35], color=_PALETTE[1], linewidth=1.5)
    ax.set_yticks(y, [r["tier"] for r in rows])
    ax.invert_yaxis()
    if with_caps:
        ax.set_xlim(0, 1.45 * max(100.0, *used))
        ax.set_xlabel("% of the tier's capacity")
    else:
        ax.set_xlim(0, 1.45 * max([*used, 1.0]))
        ax.set_xlabel(unit)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Tier utilisation", loc="left", fontsize=11)
    return _svg(fig)


def _chart_modality_mix(report: CapacityReport) -> str:
    t = report.tables["volume_monthly"].to_pylist()
    rows = [r for r in t if r["dimension"] == "modality"]
    months = sorted({r["period_start"] for r in rows})[-_HISTORY_MONTHS:]
    mods = sorted({r["value"] for r in rows})
    index = {m: i for i, m in enumerate(months)}
    data = np.zeros((len(mods), len(months)))
    for r in rows:
        if r["period_start"] in index:
            data[mods.index(r["value"]), index[r["period_start"]]] += r["bytes"]
    unit, size = axis_unit(_top(data.sum(axis=0)))
    fig = _figure()
    ax = fig.subplots()
    # Stacked steps, one polygon per modality (hundreds of bar patches make slow, heavy SVG).
    x = np.append(np.array(months, dtype="datetime64[M]"), np.datetime64(months[-1], "M") + 1).astype("datetime64[D]")
    bottom = np.zeros(len(months) + 1)
    for i, m in enumerate(mods):
        top = bottom + np.append(data[i], data[i][-1]) / size
        ax.fill_between(x, bottom, top, step="post", color=_PALETTE[i % len(_PALETTE)], linewidth=0, label=m)
        bottom = top
    _style(ax, f"{unit} per month")
    ax.set_ylim(bottom=0, top=1.25 * float(bottom.max() or 1.0))
    ax.set_title(f"Bytes per month by modality (last {len(months)} months)", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=min(len(mods), 8))
    return _svg(fig)


def _chart_what_if(report: CapacityReport) -> str:
    rows = report.tables["what_if_retention"].to_pylist()
    series = [("online_bytes_now", "now"), ("online_bytes_12_months", "in 12 months"),
              ("online_bytes_24_months", "in 24 months")]
    cap = report.tables["tier_utilisation"].to_pylist()[0]["capacity_bytes"]
    values = {key: np.array([r[key] or 0.0 for r in rows], dtype=float) for key, _ in series}
    unit, size = axis_unit(_top(*values.values(), cap))
    fig = _figure(height=3.0)
    ax = fig.subplots()
    x = np.arange(len(rows))
    width = 0.26
    for i, (key, label) in enumerate(series):
        ax.bar(x + (i - 1) * width, values[key] / size, width=width, color=_PALETTE[i], label=label)
    if cap:
        ax.axhline(cap / size, color="#24292f", linewidth=1.0, label=f"capacity {fmt_bytes(cap)}")
    ax.set_xticks(x, [f"{r['online_retention_years']} y" for r in rows])
    ax.set_xlabel("online retention")
    _style(ax, f"{unit} online")
    ax.set_ylim(bottom=0, top=1.3 * _top(*values.values(), cap) / size)
    ax.set_title("What if: online bytes by years of online retention", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=4)
    return _svg(fig)
