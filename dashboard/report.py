"""The printable per-patient report for a clinic visit: HTML and PDF from the same numbers.

What it shows, for one device and period: the counts (by type; counted, confirmed, unsure and
excluded by review), events per day with the monitored hours beside them and the intervention
markers, the hour-of-day profile per monitored hour, day versus night, the duration and clonus
frequency distributions, monitoring coverage and gaps by cause, activity time, and the method's
stated limits (``docs/detector.md``, "Known limits"), so that the numbers are read for what they are.

Why matplotlib + reportlab: both install from PyPI as wheels with no system service or browser
(clinic servers are often offline and minimal); matplotlib draws the charts once as PNG, which the
HTML embeds as data URIs (one self-contained file, no CDN) and reportlab places in the PDF.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dashboard.analysis.trends import DURATION_BINS_S, FREQUENCY_BINS_HZ, TrendConfig, Trends, compute_trends
from dashboard.history.base import EVENT_TYPES, HistoryStore, InterventionRow

__all__ = ["Report", "build_report", "method_limits", "render_html", "render_pdf"]

_DETECTOR_DOC = Path(__file__).resolve().parent.parent / "docs" / "detector.md"
#: Used when docs/ is not installed beside the package (a wheel install); kept in step with
#: docs/detector.md by tests/unit/test_report.py.
_LIMITS_FALLBACK = [
    "Voluntary movement: bursts that belong to walking, posture transitions, rhythmic exercise or other "
    "voluntary movement are not counted as spasms, but about 20 false alarms per hour remain during "
    "voluntary activity on the simulated scenarios, and a spasm fused with a gait burst can be missed.",
    "A QRS (ECG pickup) right after a short burst can stretch it (a twitch may be typed as a short "
    "phasic spasm).",
    "Weak spasms (< 8x the resting level) are not found, or found late; cross-talk above 1/8 of a "
    "neighbouring channel's amplitude can be reported on the neighbour.",
    "Tremor onsets are coarser than EMG onsets (median error about 60 ms).",
    "The mains auto-detection decides once, on the first second; hum of the other mains frequency "
    "appearing later is not removed.",
]
_COLORS = {
    "twitch": "#8da0cb",
    "phasic": "#66c2a5",
    "tonic": "#fc8d62",
    "clonus": "#e78ac3",
    "tremor": "#a6d854",
}


def method_limits(doc: Path = _DETECTOR_DOC) -> list[str]:
    """The bullets of "### Known limits" in docs/detector.md as plain text (markdown stripped)."""
    try:
        text = doc.read_text(encoding="utf-8")
    except OSError:
        return list(_LIMITS_FALLBACK)
    m = re.search(r"^### Known limits\n(.*?)(?=^#)", text, flags=re.S | re.M)
    if not m:
        return list(_LIMITS_FALLBACK)
    bullets = re.split(r"^- ", m.group(1).strip(), flags=re.M)
    out = []
    for b in bullets:
        b = " ".join(b.split())
        b = re.sub(r"\*\*(.*?)\*\*", r"\1", b)
        b = re.sub(r"`([^`]*)`", r"\1", b)
        if b:
            out.append(b)
    return out or list(_LIMITS_FALLBACK)


@dataclass
class Report:
    """Everything one report shows; ``charts`` are PNG bytes by name."""

    trends: Trends
    interventions: list[InterventionRow]
    limits: list[str]
    site: str | None = None
    generated_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    charts: dict[str, bytes] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"Spasm monitoring report: patient {self.trends.patient or '?'}, device {self.trends.device}"


def build_report(
    store: HistoryStore,
    device: str,
    start: datetime,
    end: datetime,
    *,
    verdicts: dict[str, str] | None = None,
    interventions: list[InterventionRow] | None = None,
    config: TrendConfig | None = None,
    patient: str = "",
    site: str | None = None,
) -> Report:
    """Query, compute the trends and draw the charts for one device and period."""
    trends = compute_trends(store, device, start, end, verdicts=verdicts, config=config, patient=patient)
    rep = Report(trends, interventions or [], method_limits(), site)
    rep.charts = _charts(rep)
    return rep


# ---------------------------------------------------------------------------------------------- charts


def _charts(rep: Report) -> dict[str, bytes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tr = rep.trends
    zone = tr.config.zone
    out: dict[str, bytes] = {}

    def png(fig: Figure) -> bytes:
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return buf.getvalue()

    # 1. Events per day by type, monitored hours beside them, intervention markers.
    fig = Figure(figsize=(8.0, 3.2))
    ax = fig.add_subplot()
    x = list(range(len(tr.days)))
    bottom = [0] * len(tr.days)
    for t in EVENT_TYPES:
        vals = [d.counts.get(t, 0) for d in tr.days]
        if any(vals):
            ax.bar(x, vals, bottom=bottom, color=_COLORS[t], label=t, width=0.8)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("events per day")
    step = max(1, len(x) // 10)
    ax.set_xticks(x[::step], [d.date.strftime("%d %b") for d in tr.days][::step], fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(x, [d.monitored_s / 3600 for d in tr.days], color="black", marker=".", lw=1, label="monitored h")
    ax2.set_ylim(0, 24.5)
    ax2.set_ylabel("hours monitored")
    day_index = {d.date: i for i, d in enumerate(tr.days)}
    for iv in rep.interventions:
        i = day_index.get(iv.at.astimezone(zone).date())
        if i is not None:
            ax.axvline(i, color="#444444", ls="--", lw=1)
            ax.annotate(iv.kind, (i, ax.get_ylim()[1]), fontsize=7, rotation=90, va="top", ha="right")
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    if handles or h2:
        ax.legend(handles + h2, labels + l2, fontsize=7, loc="upper left", ncol=3)
    ax.set_title("Events per day (counted) and hours actually monitored", fontsize=10)
    out["daily"] = png(fig)

    # 2. Hour-of-day profile per monitored hour.
    fig = Figure(figsize=(8.0, 2.6))
    ax = fig.add_subplot()
    rates = [h["per_monitored_hour"] or 0.0 for h in tr.hour_of_day]
    night = [tr.config.night_start.hour <= h or h < tr.config.night_end.hour for h in range(24)]
    if tr.config.night_start.hour < tr.config.night_end.hour:
        night = [tr.config.night_start.hour <= h < tr.config.night_end.hour for h in range(24)]
    ax.bar(range(24), rates, color=["#2c3e50" if n else "#f39c12" for n in night])
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel(f"local hour ({tr.config.tz}); dark = night")
    ax.set_ylabel("events per monitored hour")
    ax.set_title("Time of day", fontsize=10)
    out["hour_of_day"] = png(fig)

    # 3. Durations and clonus frequency.
    fig = Figure(figsize=(8.0, 2.8))
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    edges = DURATION_BINS_S
    labels = [f"<{hi:g}" if hi != float("inf") else f">{lo:g}" for lo, hi in itertools.pairwise(edges)]
    bottom = [0] * len(labels)
    for t in EVENT_TYPES:
        vals = tr.durations.get(t, [0] * len(labels))
        if any(vals):
            ax.bar(range(len(labels)), vals, bottom=bottom, color=_COLORS[t], label=t)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=45)
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("events")
    ax.set_title("Duration", fontsize=10)
    if any(bottom):
        ax.legend(fontsize=7)
    flabels = [f"{FREQUENCY_BINS_HZ[i]:g}" for i in range(len(FREQUENCY_BINS_HZ) - 1)]
    bx.bar(range(len(flabels)), tr.clonus_frequency, color=_COLORS["clonus"])
    bx.set_xticks(range(len(flabels)), flabels, fontsize=7, rotation=45)
    bx.set_xlabel("clonus frequency (Hz, bin start)")
    bx.set_title("Clonus frequency", fontsize=10)
    out["distributions"] = png(fig)
    return out


# ---------------------------------------------------------------------------------------------- content


def _fmt_h(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def _rate(v: float | None) -> str:
    return "n/a (not monitored)" if v is None else f"{v:.2f}"


def _summary_rows(rep: Report) -> list[tuple[str, str]]:
    tr = rep.trends
    zone = tr.config.zone
    dn = tr.day_night
    t0, t1 = tr.start.astimezone(zone), tr.end.astimezone(zone)
    by_type = ", ".join(f"{t} {tr.totals.get(t, 0)}" for t in EVENT_TYPES)
    night = f"{tr.config.night_start:%H:%M}-{tr.config.night_end:%H:%M}"
    day_night = (
        f"{dn['day']['count']:g} by day ({_rate(dn['day']['per_monitored_hour'])}/h), "
        f"{dn['night']['count']:g} at night ({_rate(dn['night']['per_monitored_hour'])}/h); night {night}"
    )
    reviewed = (
        f"{tr.confirmed} confirmed, {tr.unsure} unsure (not counted), {tr.excluded} not a spasm "
        f"(excluded), {tr.unreviewed} not reviewed (counted)"
    )
    freq = tr.clonus_frequency_median_hz
    intensity = ", ".join(f"{t} {v:.1f}x" for t, v in tr.intensity_median.items() if v is not None)
    gaps = ", ".join(
        f"{c}: {int(v['count'])} ({v['seconds'] / 60:.1f} min)" for c, v in sorted(tr.gaps_by_cause.items())
    )
    activity = ", ".join(f"{c} {_fmt_h(sec)}" for c, sec in sorted(tr.activity_s.items()))
    per_hour = tr.total / (tr.monitored_s / 3600) if tr.monitored_s else None
    return [
        ("Period", f"{t0:%Y-%m-%d %H:%M} to {t1:%Y-%m-%d %H:%M} ({tr.config.tz})"),
        (
            "Monitored",
            f"{_fmt_h(tr.monitored_s)} of {_fmt_h(tr.period_s)} ({100 * tr.coverage_fraction:.0f} %)",
        ),
        ("Spasms counted", f"{tr.total} ({by_type})"),
        ("Per monitored hour", _rate(per_hour)),
        ("Day / night", day_night),
        ("Reviewed", reviewed),
        ("Clonus frequency", "n/a" if freq is None else f"median {freq:.1f} Hz"),
        ("Median intensity", intensity or "n/a"),
        ("Gaps", gaps or "none"),
        ("Activity", activity or "not recorded"),
    ]


def _day_rows(rep: Report) -> list[list[str]]:
    out = [["Date", *EVENT_TYPES, "Total", "Night", "Unsure", "Excl.", "Monitored", "Per hour"]]
    for d in rep.trends.days:
        rate = "-" if d.per_monitored_hour is None else f"{d.per_monitored_hour:.2f}"
        counts = [str(d.counts.get(t, 0)) for t in EVENT_TYPES]
        n = [d.total, d.night_count, d.unsure, d.excluded]
        out.append([d.date.isoformat(), *counts, *map(str, n), _fmt_h(d.monitored_s), rate])
    return out


_CSS = (
    "body{font-family:sans-serif;max-width:60rem;margin:1rem auto;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0}"
    "td,th{border:1px solid #bbb;padding:2px 6px;font-size:.85rem}th{background:#eee}img{max-width:100%}"
    ".note{background:#fff6d6;padding:.5rem;border:1px solid #e6c65c}"
    "@media print{body{margin:0}.pb{page-break-before:always}}"
)
_NOTE = (
    "Counts are spasms detected automatically by the wearable sEMG/accelerometer sensor, minus events a "
    "clinician reviewed as not a spasm; events reviewed as unsure are shown separately. No events during "
    "unmonitored time means no data, not no spasms: read the counts beside the hours monitored."
)


def _byline(rep: Report) -> str:
    site = f"Site {rep.site}. " if rep.site else ""
    return f"{site}Generated {rep.generated_at:%Y-%m-%d %H:%M %Z}."


def render_html(rep: Report) -> str:
    """One self-contained, printable HTML page (charts inline, no external assets)."""
    e = html.escape
    tr = rep.trends
    zone = tr.config.zone
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(rep.title)}</title><style>",
        _CSS,
        "</style></head><body>",
        f"<h1>{e(rep.title)}</h1>",
        f"<p>{e(_byline(rep))}</p>",
        f"<p class='note'>{e(_NOTE)}</p>",
        "<h2>Summary</h2><table>",
        *(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary_rows(rep)),
        "</table>",
    ]
    for name, caption in (
        ("daily", "Events per day"),
        ("hour_of_day", "Time of day"),
        ("distributions", "Durations"),
    ):
        if name in rep.charts:
            data = base64.b64encode(rep.charts[name]).decode()
            parts.append(f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'></figure>")
    if rep.interventions:
        parts.append("<h2>Interventions</h2><table><tr><th>When</th><th>Kind</th><th>Note</th></tr>")
        for iv in rep.interventions:
            when = f"{iv.at.astimezone(zone):%Y-%m-%d}" + (
                f" to {iv.end.astimezone(zone):%Y-%m-%d}" if iv.end else ""
            )
            parts.append(f"<tr><td>{e(when)}</td><td>{e(iv.kind)}</td><td>{e(iv.text)}</td></tr>")
        parts.append("</table>")
    rows = _day_rows(rep)
    parts.append("<h2 class='pb'>Per day</h2><table>")
    parts.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in rows[0]) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
    parts.append("</table><h2>Limits of the method</h2><ul>")
    parts += [f"<li>{e(x)}</li>" for x in rep.limits]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def render_pdf(rep: Report) -> bytes:
    """The same report as an A4 PDF (reportlab)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    tr = rep.trends
    zone = tr.config.zone
    buf = io.BytesIO()
    margin = 1.5 * cm
    doc = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=margin, rightMargin=margin, topMargin=margin, bottomMargin=margin,
        title=rep.title, author="neurospasm",
    )  # fmt: skip
    e = html.escape
    story: list[Any] = [
        Paragraph(e(rep.title), styles["Title"]),
        Paragraph(e(_byline(rep)), styles["BodyText"]),
        Paragraph(e(_NOTE), small),
        Spacer(1, 0.3 * cm),
    ]
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("FONTSIZE", (0, 0), (-1, -1), 8),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("BACKGROUND", (0, 0), (0, -1), colors.whitesmoke),
        ]
    )
    summary = [[Paragraph(f"<b>{e(k)}</b>", small), Paragraph(e(v), small)] for k, v in _summary_rows(rep)]
    story += [Table(summary, colWidths=[4 * cm, 14 * cm], style=grid), Spacer(1, 0.3 * cm)]
    width = 18 * cm
    for name in ("daily", "hour_of_day", "distributions"):
        if name in rep.charts:
            img = Image(io.BytesIO(rep.charts[name]))
            img.drawHeight = width * img.imageHeight / img.imageWidth
            img.drawWidth = width
            story += [img, Spacer(1, 0.2 * cm)]
    if rep.interventions:
        story.append(Paragraph("Interventions", styles["Heading2"]))
        rows = [["When", "Kind", "Note"]]
        for iv in rep.interventions:
            when = f"{iv.at.astimezone(zone):%Y-%m-%d}" + (
                f" to {iv.end.astimezone(zone):%Y-%m-%d}" if iv.end else ""
            )
            rows.append([when, iv.kind, Paragraph(e(iv.text), small)])
        story.append(Table(rows, colWidths=[4.5 * cm, 4.5 * cm, 9 * cm], style=grid))
    story += [PageBreak(), Paragraph("Per day", styles["Heading2"])]
    day_style = TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 7),
                            ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)])  # fmt: skip
    story.append(Table(_day_rows(rep), repeatRows=1, style=day_style))
    story += [Spacer(1, 0.4 * cm), Paragraph("Limits of the method", styles["Heading2"])]
    story += [Paragraph("&bull; " + e(x), small) for x in rep.limits]
    doc.build(story)
    return buf.getvalue()
