"""Clinicians' reviews of events and intervention markers: durable, auditable, exportable.

Why its own SQLite file (``{dashboard state dir}/reviews.sqlite``) rather than the history store:
the history is the gateway's (read-only for the dashboard, and in a clinic it is InfluxDB), while
reviews are the dashboard's own clinical record and must survive either being replaced.

- **Durable**: WAL, ``synchronous=FULL``, one transaction per change; a change returned to the
  caller is on disk.
- **Auditable**: every change appends a row to ``audit`` (who, when, action, what, old -> new as
  JSON) in the same transaction as the change. Triggers refuse UPDATE and DELETE on ``audit``, so
  the log is append-only through any SQLite client, not only through this class.
- **Latest wins**: ``reviews`` holds the current verdict per event; earlier ones are in the log.
- **Export** (``labels`` / ``labels_json`` / ``labels_csv``): one label per reviewed event, with
  the event's own fields when a HistoryStore is given, for tuning the detector
  (format in docs/dashboard.md, ``neurospasm.labels/1``).

No names: ``reviewer`` / ``author`` are the dashboard's login names (keep them pseudonymous too);
notes are free text and the dashboard tells users not to put names in them.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from dashboard.history.base import REVIEW_VERDICTS, HistoryStore, InterventionRow, ReviewRow, from_ns, to_ns

__all__ = ["LABELS_SCHEMA", "LABEL_COLUMNS", "AuditRow", "ReviewError", "ReviewStore"]

LABELS_SCHEMA = "neurospasm.labels/1"
LABEL_COLUMNS = (
    "event_id",
    "verdict",
    "note",
    "reviewer",
    "reviewed_at",
    "device",
    "patient",
    "type",
    "channel",
    "onset",
    "end",
    "duration_s",
    "relative_amplitude",
    "peak_uv",
    "frequency_hz",
    "confidence",
)

_REVIEW_COLS = "event_id, verdict, note, reviewer, at_ns, device, patient"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    event_id TEXT PRIMARY KEY, verdict TEXT NOT NULL, note TEXT NOT NULL, reviewer TEXT NOT NULL,
    at_ns INTEGER NOT NULL, device TEXT, patient TEXT
);
CREATE INDEX IF NOT EXISTS reviews_device ON reviews (device);
CREATE TABLE IF NOT EXISTS interventions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, patient TEXT NOT NULL, device TEXT, at_ns INTEGER NOT NULL,
    end_ns INTEGER, kind TEXT NOT NULL, text TEXT NOT NULL, author TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS interventions_patient ON interventions (patient, at_ns);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ns INTEGER NOT NULL, who TEXT NOT NULL,
    action TEXT NOT NULL, entity TEXT NOT NULL, key TEXT NOT NULL, old TEXT, new TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class ReviewError(ValueError):
    """A review or intervention was refused (bad verdict, unknown id, missing reviewer)."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One change: ``action`` is ``review``, ``unreview``, ``intervention.add`` / ``.edit`` /
    ``.delete``; ``old`` / ``new`` the entity before and after (None when absent)."""

    seq: int
    at: datetime
    who: str
    action: str
    entity: str
    key: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def _now() -> datetime:
    return datetime.now(UTC)


def _review_dict(r: ReviewRow) -> dict[str, Any]:
    return {
        "event_id": r.event_id,
        "verdict": r.verdict,
        "note": r.note,
        "reviewer": r.reviewer,
        "at": r.at.isoformat(),
        "device": r.device,
        "patient": r.patient,
    }


def _intervention_dict(r: InterventionRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "patient": r.patient,
        "device": r.device,
        "at": r.at.isoformat(),
        "end": r.end.isoformat() if r.end else None,
        "kind": r.kind,
        "text": r.text,
        "author": r.author,
    }


class ReviewStore:
    """Reviews, interventions and their audit log in ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one writer at a time; the web app calls from threads
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------------------------
    def _change(
        self,
        who: str,
        action: str,
        entity: str,
        key: str,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO audit (at_ns, who, action, entity, key, old, new) VALUES (?,?,?,?,?,?,?)",
            (
                to_ns(_now()),
                who,
                action,
                entity,
                key,
                None if old is None else json.dumps(old, sort_keys=True),
                None if new is None else json.dumps(new, sort_keys=True),
            ),
        )

    def _tx(self) -> _Tx:
        return _Tx(self._db, self._lock)

    def review(
        self,
        event_id: str,
        verdict: str,
        *,
        reviewer: str,
        note: str = "",
        device: str | None = None,
        patient: str | None = None,
        at: datetime | None = None,
    ) -> ReviewRow:
        """Set the verdict on an event (``confirmed``, ``not_spasm``, ``unsure``); logged."""
        if verdict not in REVIEW_VERDICTS:
            raise ReviewError(f"verdict {verdict!r}: expected one of {', '.join(REVIEW_VERDICTS)}")
        if not event_id or not reviewer:
            raise ReviewError("a review needs an event id and a reviewer")
        row = ReviewRow(
            event_id=event_id,
            verdict=cast(Any, verdict),
            note=note.strip(),
            reviewer=reviewer,
            at=at or _now(),
            device=device,
            patient=patient,
        )
        with self._tx():
            old = self._get(event_id)
            if old is not None and device is None and patient is None:
                row = ReviewRow(**{**_fields(row), "device": old.device, "patient": old.patient})
            self._db.execute(
                "INSERT OR REPLACE INTO reviews VALUES (?,?,?,?,?,?,?)",
                (row.event_id, row.verdict, row.note, row.reviewer, to_ns(row.at), row.device, row.patient),
            )
            self._change(
                reviewer,
                "review",
                "event",
                event_id,
                None if old is None else _review_dict(old),
                _review_dict(row),
            )
        return row

    def unreview(self, event_id: str, *, reviewer: str) -> bool:
        """Withdraw the verdict on an event (it counts as unreviewed again); logged. False if none."""
        with self._tx():
            old = self._get(event_id)
            if old is None:
                return False
            self._db.execute("DELETE FROM reviews WHERE event_id = ?", (event_id,))
            self._change(reviewer, "unreview", "event", event_id, _review_dict(old), None)
        return True

    def add_intervention(
        self,
        patient: str,
        at: datetime,
        kind: str,
        text: str = "",
        *,
        author: str,
        device: str | None = None,
        end: datetime | None = None,
    ) -> InterventionRow:
        """A treatment marker (dose change, botulinum toxin, physiotherapy course, ...); logged."""
        if not patient or not kind.strip() or not author:
            raise ReviewError("an intervention needs a patient, a kind and an author")
        if end is not None and end < at:
            raise ReviewError(f"intervention ends ({end.isoformat()}) before it starts ({at.isoformat()})")
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO interventions (patient, device, at_ns, end_ns, kind, text, author) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    patient,
                    device,
                    to_ns(at),
                    None if end is None else to_ns(end),
                    kind.strip(),
                    text.strip(),
                    author,
                ),
            )
            row = InterventionRow(
                int(cur.lastrowid or 0), patient, at, kind.strip(), text.strip(), author, device, end
            )
            self._change(
                author, "intervention.add", "intervention", str(row.id), None, _intervention_dict(row)
            )
        return row

    def edit_intervention(self, intervention_id: int, *, author: str, **changes: Any) -> InterventionRow:
        """Change ``at``, ``end``, ``kind`` or ``text`` of a marker; logged (old -> new)."""
        allowed = {"at", "end", "kind", "text"}
        if not changes or set(changes) - allowed:
            raise ReviewError(
                f"intervention changes must be some of {sorted(allowed)}, got {sorted(changes)}"
            )
        with self._tx():
            old = self._intervention(intervention_id)
            if old is None:
                raise ReviewError(f"no intervention {intervention_id}")
            new = InterventionRow(**{**_fields(old), **changes})
            self._db.execute(
                "UPDATE interventions SET at_ns = ?, end_ns = ?, kind = ?, text = ? WHERE id = ?",
                (
                    to_ns(new.at),
                    None if new.end is None else to_ns(new.end),
                    new.kind,
                    new.text,
                    intervention_id,
                ),
            )
            self._change(
                author, "intervention.edit", "intervention", str(intervention_id),
                _intervention_dict(old), _intervention_dict(new),
            )  # fmt: skip
        return new

    def delete_intervention(self, intervention_id: int, *, author: str) -> None:
        """Hide a marker (kept in the table, marked deleted; logged)."""
        with self._tx():
            old = self._intervention(intervention_id)
            if old is None:
                raise ReviewError(f"no intervention {intervention_id}")
            self._db.execute("UPDATE interventions SET deleted = 1 WHERE id = ?", (intervention_id,))
            self._change(
                author,
                "intervention.delete",
                "intervention",
                str(intervention_id),
                _intervention_dict(old),
                None,
            )

    # -- reading ---------------------------------------------------------------------------------
    def _get(self, event_id: str) -> ReviewRow | None:
        r = self._db.execute(
            f"SELECT {_REVIEW_COLS} FROM reviews WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        return None if r is None else ReviewRow(r[0], r[1], r[2], r[3], from_ns(r[4]), r[5], r[6])

    def get(self, event_id: str) -> ReviewRow | None:
        """The current review of an event, or None."""
        with self._lock:
            return self._get(event_id)

    def reviews(
        self, *, device: str | None = None, patient: str | None = None, event_ids: Iterable[str] | None = None
    ) -> dict[str, ReviewRow]:
        """Current reviews by event id, optionally of one device / patient / some events."""
        sql = f"SELECT {_REVIEW_COLS} FROM reviews WHERE 1=1"
        args: list[Any] = []
        if device is not None:
            sql += " AND device = ?"
            args.append(device)
        if patient is not None:
            sql += " AND patient = ?"
            args.append(patient)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY at_ns, event_id", args).fetchall()
        out = {r[0]: ReviewRow(r[0], r[1], r[2], r[3], from_ns(r[4]), r[5], r[6]) for r in rows}
        if event_ids is not None:
            wanted = set(event_ids)
            out = {k: v for k, v in out.items() if k in wanted}
        return out

    def verdicts(self, event_ids: Iterable[str]) -> dict[str, str]:
        """event id -> verdict for the reviewed ones among ``event_ids`` (for the trends)."""
        ids = list(event_ids)
        out: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = f"SELECT event_id, verdict FROM reviews WHERE event_id IN ({','.join('?' * len(chunk))})"
                out.update(dict(self._db.execute(q, chunk).fetchall()))
        return out

    def _intervention(self, intervention_id: int) -> InterventionRow | None:
        r = self._db.execute(
            "SELECT id, patient, at_ns, kind, text, author, device, end_ns FROM interventions "
            "WHERE id = ? AND deleted = 0",
            (intervention_id,),
        ).fetchone()
        return None if r is None else _intervention_row(r)

    def interventions(
        self, patient: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[InterventionRow]:
        """Markers of a patient that overlap ``[start, end)`` (all when not given), by time."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, patient, at_ns, kind, text, author, device, end_ns FROM interventions "
                "WHERE patient = ? AND deleted = 0 ORDER BY at_ns, id",
                (patient,),
            ).fetchall()
        out = [_intervention_row(r) for r in rows]
        if end is not None:
            out = [r for r in out if r.at < end]
        if start is not None:
            out = [r for r in out if (r.end or r.at) >= start]
        return out

    def audit(self, *, entity: str | None = None, key: str | None = None) -> list[AuditRow]:
        """The change log, oldest first."""
        sql = "SELECT seq, at_ns, who, action, entity, key, old, new FROM audit WHERE 1=1"
        args: list[Any] = []
        if entity is not None:
            sql += " AND entity = ?"
            args.append(entity)
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [
            AuditRow(
                r[0],
                from_ns(r[1]),
                r[2],
                r[3],
                r[4],
                r[5],
                None if r[6] is None else json.loads(r[6]),
                None if r[7] is None else json.loads(r[7]),
            )
            for r in rows
        ]

    # -- export ----------------------------------------------------------------------------------
    def labels(
        self, history: HistoryStore | None = None, *, device: str | None = None, patient: str | None = None
    ) -> list[dict[str, Any]]:
        """One label per reviewed event (columns ``LABEL_COLUMNS``), by onset when known.

        With ``history``, each label carries the event's fields (type, channel, onset, ...), so a
        tuning script needs nothing else; events the store no longer has keep only the review.
        """
        out = []
        for r in self.reviews(device=device, patient=patient).values():
            label: dict[str, Any] = dict.fromkeys(LABEL_COLUMNS)
            label.update(
                event_id=r.event_id, verdict=r.verdict, note=r.note, reviewer=r.reviewer,
                reviewed_at=r.at.isoformat(), device=r.device, patient=r.patient,
            )  # fmt: skip
            ev = history.event(r.event_id) if history is not None else None
            if ev is not None:
                label.update(
                    device=ev.device, patient=ev.patient, type=ev.type, channel=ev.channel,
                    onset=ev.onset.isoformat(), end=ev.end.isoformat(), duration_s=ev.duration_s,
                    relative_amplitude=ev.relative_amplitude, peak_uv=ev.peak_uv,
                    frequency_hz=ev.frequency_hz, confidence=ev.confidence,
                )  # fmt: skip
            out.append(label)
        out.sort(key=lambda x: (x["onset"] or "", x["event_id"]))
        return out

    def labels_json(self, history: HistoryStore | None = None, **kw: Any) -> str:
        """``{"schema": "neurospasm.labels/1", "exported_at": ..., "labels": [...]}``."""
        doc = {
            "schema": LABELS_SCHEMA,
            "exported_at": _now().isoformat(),
            "labels": self.labels(history, **kw),
        }
        return json.dumps(doc, indent=1, sort_keys=False)

    def labels_csv(self, history: HistoryStore | None = None, **kw: Any) -> str:
        """The same labels as CSV with a header row of ``LABEL_COLUMNS``; empty cells for None."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(LABEL_COLUMNS), lineterminator="\n")
        w.writeheader()
        for label in self.labels(history, **kw):
            w.writerow({k: "" if v is None else v for k, v in label.items()})
        return buf.getvalue()


def _fields(row: Any) -> dict[str, Any]:
    return {k: getattr(row, k) for k in row.__dataclass_fields__}


def _intervention_row(r: tuple[Any, ...]) -> InterventionRow:
    return InterventionRow(
        int(r[0]), r[1], from_ns(r[2]), r[3], r[4], r[5], r[6], None if r[7] is None else from_ns(r[7])
    )


class _Tx:
    """``with self._tx():`` one IMMEDIATE transaction under the writer lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db = db
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.db.execute("COMMIT" if et is None else "ROLLBACK")
        finally:
            self.lock.release()
