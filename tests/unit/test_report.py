"""The printable report: HTML self-contained, PDF pages that render (poppler) and carry the counts."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from support import history_data as hd

from dashboard.analysis.trends import TrendConfig
from dashboard.history.sqlite import SqliteHistory
from dashboard.report import _LIMITS_FALLBACK, build_report, method_limits, render_html, render_pdf
from dashboard.reviews import ReviewStore
from ingest.outputs.sinks.sqlite import SQLITE_FILENAME, SqliteSink

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} missing: run scripts/test, which installs poppler-utils", pytrace=False)
    return path


def test_report_html_and_pdf_show_the_counts_coverage_and_limits(tmp_path: Path) -> None:
    ds = hd.build()

    async def load() -> None:
        async with SqliteSink(tmp_path / SQLITE_FILENAME) as sink:
            await sink.send(ds.records)

    asyncio.run(load())
    start, end = hd.T0 - timedelta(days=2), hd.T0 + timedelta(days=1)
    with SqliteHistory(tmp_path / SQLITE_FILENAME) as history, ReviewStore(tmp_path / "r.sqlite") as rs:
        events = history.events(hd.DEVICE, start, end)
        rs.review(events[0].id, "not_spasm", reviewer="dr-a")
        rs.review(events[1].id, "unsure", reviewer="dr-a")
        rs.add_intervention(
            hd.PATIENT, hd.T0 - timedelta(days=1), "dose change", "baclofen <15> mg", author="dr-a"
        )
        rep = build_report(
            history, hd.DEVICE, start, end, verdicts=rs.verdicts(e.id for e in events),
            interventions=rs.interventions(hd.PATIENT, start, end), config=TrendConfig(tz="Europe/Berlin"),
            site="ward-3",
        )  # fmt: skip
    counted = len(events) - 2
    assert rep.trends.total == counted and len(rep.trends.days) == 4
    assert set(rep.charts) == {"daily", "hour_of_day", "distributions"}
    assert all(c.startswith(b"\x89PNG") for c in rep.charts.values())

    page = render_html(rep)
    assert f"<th>Spasms counted</th><td>{counted} (twitch {rep.trends.totals['twitch']}" in page
    assert "1 unsure (not counted), 1 not a spasm (excluded)" in page
    assert "baclofen &lt;15&gt; mg" in page  # escaped
    assert not re.search(r"""(src|href)=['"]?https?:""", page)  # offline: nothing fetched
    assert page.count("data:image/png;base64,") == 3 and "Voluntary movement" in page

    pdf = render_pdf(rep)
    assert pdf.startswith(b"%PDF-")
    out = tmp_path / "report.pdf"
    out.write_bytes(pdf)
    subprocess.run([_tool("pdftoppm"), "-r", "40", "-png", str(out), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    for p in pages:
        img = imread(p)
        assert img.shape[0] > 300 and float(np.std(img)) > 0.01  # rendered, and not blank
    text = subprocess.run([_tool("pdftotext"), "-layout", str(out), "-"], check=True, capture_output=True,
                          text=True).stdout  # fmt: skip
    assert f"{counted} (twitch {rep.trends.totals['twitch']}" in text
    assert "Monitored" in text and f"{rep.trends.monitored_s / 3600:.1f} h" in text
    assert "Limits of the method" in text and "Voluntary movement" in text and "Site ward-3" in text


def test_method_limits_come_from_the_detector_doc_and_the_fallback_matches_it() -> None:
    limits = method_limits()
    doc = (REPO / "docs" / "detector.md").read_text()
    assert len(limits) == len(_LIMITS_FALLBACK) >= 4
    for item in limits:
        assert item.split()[0] in doc and "**" not in item and "`" not in item
    # The fallback (for installs without docs/) says the same things, in the same order.
    for doc_item, fallback in zip(limits, _LIMITS_FALLBACK, strict=True):
        assert doc_item.split()[:3] == fallback.split()[:3], (doc_item, fallback)
    assert method_limits(REPO / "no-such.md") == _LIMITS_FALLBACK
