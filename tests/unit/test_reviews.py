"""Reviews and interventions: durable across reopen (and kill -9), audited append-only, exported."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import history_data as hd

from dashboard.history.sqlite import SqliteHistory
from dashboard.reviews import LABEL_COLUMNS, LABELS_SCHEMA, ReviewError, ReviewStore
from ingest.outputs.sinks.sqlite import SQLITE_FILENAME, SqliteSink

REPO = Path(__file__).resolve().parents[2]


def test_reviews_survive_reopen_latest_wins_and_every_change_is_audited(tmp_path: Path) -> None:
    path = tmp_path / "reviews.sqlite"
    with ReviewStore(path) as rs:
        rs.review("e-1", "unsure", reviewer="dr-a", note="  looks like a transfer  ", device="d", patient="p")
        rs.review("e-1", "not_spasm", reviewer="dr-b")
        rs.review("e-2", "confirmed", reviewer="dr-a", device="d", patient="p")
        assert rs.unreview("e-2", reviewer="dr-b") is True and rs.unreview("e-9", reviewer="x") is False
        with pytest.raises(ReviewError, match="verdict 'maybe'"):
            rs.review("e-3", "maybe", reviewer="dr-a")
        with pytest.raises(ReviewError, match="reviewer"):
            rs.review("e-3", "confirmed", reviewer="")
    with ReviewStore(path) as rs:
        r = rs.get("e-1")
        assert r is not None and (r.verdict, r.reviewer, r.device, r.patient) == (
            "not_spasm",
            "dr-b",
            "d",
            "p",
        )
        assert rs.get("e-2") is None and rs.verdicts(["e-1", "e-2", "e-3"]) == {"e-1": "not_spasm"}
        log = rs.audit(entity="event")
        assert [(a.action, a.key, a.who) for a in log] == [
            ("review", "e-1", "dr-a"),
            ("review", "e-1", "dr-b"),
            ("review", "e-2", "dr-a"),
            ("unreview", "e-2", "dr-b"),
        ]
        assert log[0].old is None and log[0].new is not None and log[0].new["note"] == "looks like a transfer"
        assert log[1].old is not None and log[1].old["verdict"] == "unsure"
        assert log[1].new is not None and log[1].new["verdict"] == "not_spasm"
        assert log[3].new is None and log[3].old is not None and log[3].old["verdict"] == "confirmed"
        assert [a.seq for a in log] == sorted(a.seq for a in log)
    # The log is append-only at the database level, whoever opens the file.
    db = sqlite3.connect(path)
    for sql in ("UPDATE audit SET who = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    db.close()


def test_interventions_add_edit_delete_are_logged_and_filtered_by_period(tmp_path: Path) -> None:
    t = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    with ReviewStore(tmp_path / "r.sqlite") as rs:
        dose = rs.add_intervention("p-1", t, "dose change", "baclofen 10 -> 15 mg tid", author="dr-a")
        course = rs.add_intervention(
            "p-1", t + timedelta(days=3), "physiotherapy course", author="pt-c", end=t + timedelta(days=17)
        )
        rs.add_intervention("p-2", t, "botulinum toxin", author="dr-a")
        with pytest.raises(ReviewError, match="before it starts"):
            rs.add_intervention("p-1", t, "x", author="a", end=t - timedelta(days=1))
        edited = rs.edit_intervention(dose.id, author="dr-b", text="baclofen 10 -> 20 mg tid")
        assert edited.text == "baclofen 10 -> 20 mg tid" and edited.at == t
        with pytest.raises(ReviewError, match="must be some of"):
            rs.edit_intervention(dose.id, author="dr-b", patient="p-2")
        assert [i.kind for i in rs.interventions("p-1")] == ["dose change", "physiotherapy course"]
        # a course still running overlaps a later period; a dose change before it does not
        later = rs.interventions("p-1", t + timedelta(days=10), t + timedelta(days=11))
        assert [i.id for i in later] == [course.id]
        rs.delete_intervention(course.id, author="dr-b")
        assert [i.id for i in rs.interventions("p-1")] == [dose.id]
        with pytest.raises(ReviewError, match="no intervention"):
            rs.delete_intervention(course.id, author="dr-b")
        log = rs.audit(entity="intervention")
        assert [a.action.split(".")[1] for a in log] == ["add", "add", "add", "edit", "delete"]
        assert log[3].old is not None and log[3].old["text"] == "baclofen 10 -> 15 mg tid"
        assert log[3].new is not None and log[3].new["text"] == "baclofen 10 -> 20 mg tid"


def test_labels_export_as_json_and_csv_with_the_event_fields(tmp_path: Path) -> None:
    ds = hd.build()
    store_path = tmp_path / SQLITE_FILENAME

    async def load() -> None:
        async with SqliteSink(store_path) as sink:
            await sink.send(ds.records)

    asyncio.run(load())
    e0, e1 = ds.events[0], ds.events[1]
    with ReviewStore(tmp_path / "r.sqlite") as rs, SqliteHistory(store_path) as history:
        rs.review(e1["id"], "not_spasm", reviewer="dr-a", note='a "cough", not a spasm', device=hd.DEVICE)
        rs.review(e0["id"], "confirmed", reviewer="dr-a", device=hd.DEVICE)
        rs.review("gone-event", "unsure", reviewer="dr-a")
        doc = json.loads(rs.labels_json(history))
        assert doc["schema"] == LABELS_SCHEMA and len(doc["labels"]) == 3
        labels = doc["labels"]
        assert [x["event_id"] for x in labels[1:]] == [e0["id"], e1["id"]]  # by onset; unknown first
        assert labels[0]["onset"] is None and labels[0]["verdict"] == "unsure"
        assert set(labels[1]) == set(LABEL_COLUMNS)
        assert (labels[2]["type"], labels[2]["duration_s"], labels[2]["channel"]) == (
            e1["type"], e1["duration_s"], e1["channel"]
        )  # fmt: skip
        rows = list(csv.DictReader(io.StringIO(rs.labels_csv(history))))
        assert [r["event_id"] for r in rows] == [x["event_id"] for x in labels]
        assert rows[2]["note"] == 'a "cough", not a spasm' and rows[0]["onset"] == ""
        assert float(rows[1]["relative_amplitude"]) == e0["relative_amplitude"]
        assert [x["event_id"] for x in rs.labels(device=hd.DEVICE)] == sorted([e0["id"], e1["id"]])


_WRITER = """
import sys
from dashboard.reviews import ReviewStore
rs = ReviewStore(sys.argv[1])
k = 0
while True:
    rs.review(f"e-{k}", "confirmed", reviewer="dr-k", device="d")
    print(k, flush=True)
    k += 1
"""


def test_a_review_acknowledged_before_kill_9_is_kept_with_its_audit_row(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    script = tmp_path / "w.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    acked = [int(proc.stdout.readline()) for _ in range(20)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with ReviewStore(path) as rs:
        reviews = rs.reviews()
        assert all(f"e-{k}" in reviews for k in acked)
        assert len(rs.audit()) == len(reviews)  # every stored review has its log row, no more
