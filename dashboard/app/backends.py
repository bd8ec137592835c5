"""The web app's one door to the data side: history (``dashboard.history``), reviews and
interventions (``dashboard.reviews``), trends (``dashboard.analysis``) and reports
(``dashboard.report``).

Why a door: the routes speak JSON-ready dicts and never import the data modules themselves, so a
part of the data side that is not built in a checkout makes its routes answer 503 with a clear
sentence (``BackendMissing``) instead of breaking the whole dashboard, and the live view (MQTT only)
works with no store at all.
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from dashboard.app.config import DashboardConfig
from dashboard.app.episodes import event_json
from dashboard.history.base import HistoryError

log = logging.getLogger("neurospasm.dashboard")

__all__ = ["BackendMissing", "Backends", "open_history"]


class BackendMissing(Exception):
    """A data-side feature this checkout or configuration does not have (answered with 503)."""


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def open_history(spec: str) -> Any:
    """A HistoryStore from a store spec:

    - ``sqlite:PATH``: the embedded store (``{local.directory}/history.sqlite`` of a gateway with
      ``[local] format = "sqlite"``);
    - ``influx:http://host:8086/DATABASE``: InfluxQL over ``/query`` (1.x, 2.x's v1 API, 3.x); a
      token, if needed, from the environment variable ``NEUROSPASM_INFLUX_TOKEN`` (never in a URL);
    - ``gateway:PATH``: whatever the gateway config at PATH writes to: its ``[influx]`` server when
      enabled, else its local SQLite store.
    """
    import os
    import urllib.parse

    from dashboard.history.influx import InfluxHistory
    from dashboard.history.sqlite import SqliteHistory

    scheme, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"dashboard.store {spec!r}: expected sqlite:PATH, influx:URL or gateway:PATH")
    if scheme == "sqlite":
        return SqliteHistory(Path(rest))
    if scheme == "influx":
        u = urllib.parse.urlsplit(rest)
        database = u.path.strip("/")
        if u.scheme not in ("http", "https") or not u.netloc or not database or "@" in u.netloc:
            raise ValueError(
                f"dashboard.store {spec!r}: expected influx:http(s)://host:port/DATABASE (no credentials "
                "in the URL: set NEUROSPASM_INFLUX_TOKEN)"
            )
        return InfluxHistory(
            f"{u.scheme}://{u.netloc}", database, token=os.environ.get("NEUROSPASM_INFLUX_TOKEN") or None
        )
    if scheme == "gateway":
        from ingest.config import load_config

        gw = load_config(rest)
        if gw.influx.enabled:
            return InfluxHistory.from_section(gw.influx)
        if gw.local.enabled and gw.local.format == "sqlite":
            return SqliteHistory(gw.local_dir / "history.sqlite")
        log.warning(
            '%s: the gateway stores no queryable history (enable [influx] or [local] format = "sqlite"): '
            "the dashboard shows live data only",
            rest,
        )
        return None
    raise ValueError(f"dashboard.store {spec!r}: unknown store {scheme!r} (sqlite, influx or gateway)")


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


class Backends:
    def __init__(self, history: Any, reviews: Any, state_dir: Path) -> None:
        self.history = history
        self.reviews_store = reviews
        self.state_dir = state_dir
        #: The last history failure (None once a query works again): shown on the pages, so that a
        #: broken store never looks like a quiet patient.
        self.history_error: str | None = None

    def _h(self, fn: str, *args: Any, default: Any = None) -> Any:
        """Call the history store; a HistoryError is remembered and gives ``default``."""
        if self.history is None:
            return default
        try:
            out = getattr(self.history, fn)(*args)
        except HistoryError as exc:
            if self.history_error != str(exc):
                log.warning("dashboard: history: %s", exc)
            self.history_error = str(exc)
            return default
        self.history_error = None
        return out

    @classmethod
    def open(cls, cfg: DashboardConfig, state_dir: Path) -> Backends:
        history = open_history(cfg.store) if cfg.store else None
        from dashboard.reviews import ReviewStore

        return cls(history, ReviewStore(state_dir / "reviews.sqlite"), state_dir)

    def close(self) -> None:
        for obj in (self.history, self.reviews_store):
            if obj is not None and hasattr(obj, "close"):
                obj.close()

    def features(self) -> dict[str, bool]:
        return {
            "history": self.history is not None,
            "reviews": self.reviews_store is not None,
            "trends": _optional("dashboard.analysis") is not None and self.history is not None,
            "report": _optional("dashboard.report") is not None and self.history is not None,
        }

    # ------------------------------------------------------------------ history

    def devices(self) -> list[tuple[str | None, str, str]]:
        return [(d.site, d.patient, d.device) for d in self._h("devices", default=[])]

    def events(self, devices: list[str], start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [event_json(e) for d in devices for e in self._h("events", d, start, end, default=[])]

    def event(self, event_id: str) -> dict[str, Any] | None:
        row = self._h("event", event_id)
        return event_json(row) if row is not None else None

    def gaps(self, devices: list[str], start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [
            {
                "id": g.id,
                "device": g.device,
                "cause": g.cause,
                "domain": g.domain,
                "start": _iso(g.start),
                "end": _iso(g.end),
                "duration_s": g.duration_s,
            }
            for d in devices
            for g in self._h("gaps", d, start, end, default=[])
        ]

    def series(
        self, device: str, kind: str, start: datetime, end: datetime, max_points: int = 1500
    ) -> dict[str, Any] | None:
        rows = self._h("series", device, kind, start, end, max_points)
        return None if rows is None else dict(rows.to_json())

    def activity(self, device: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [
            {"context": a.context, "start": _iso(a.start), "end": _iso(a.end), "duration_s": a.duration_s}
            for a in self._h("activity", device, start, end, default=[])
        ]

    # ------------------------------------------------------------------ reviews

    def _reviews(self) -> Any:
        if self.reviews_store is None:
            raise BackendMissing("reviews are not available in this build (dashboard.reviews missing)")
        return self.reviews_store

    @staticmethod
    def _review_json(r: Any) -> dict[str, Any]:
        return {
            "event_id": r.event_id,
            "verdict": r.verdict,
            "note": r.note,
            "reviewer": r.reviewer,
            "at": _iso(r.at),
        }

    def latest_reviews(self, event_ids: list[str]) -> dict[str, dict[str, Any]]:
        if self.reviews_store is None or not event_ids:
            return {}
        rows = self.reviews_store.reviews(event_ids=event_ids)
        return {k: self._review_json(v) for k, v in rows.items()}

    def review(
        self, event_id: str, verdict: str, note: str, reviewer: str, device: str | None, patient: str
    ) -> dict[str, Any]:
        from dashboard.reviews import ReviewError

        try:
            row = self._reviews().review(
                event_id, verdict, note=note, reviewer=reviewer, device=device, patient=patient
            )
        except ReviewError as exc:
            raise ValueError(str(exc)) from exc
        return self._review_json(row)

    def audit(self, event_id: str) -> list[dict[str, Any]]:
        return [
            {"seq": a.seq, "at": _iso(a.at), "who": a.who, "action": a.action, "old": a.old, "new": a.new}
            for a in self._reviews().audit(entity="event", key=event_id)
        ]

    def labels(self, patient: str, fmt: str) -> str:
        store = self._reviews()
        if fmt == "csv":
            return str(store.labels_csv(self.history, patient=patient))
        return str(store.labels_json(self.history, patient=patient))

    def interventions(self, patient: str) -> list[dict[str, Any]]:
        return [self._intervention_json(r) for r in self._reviews().interventions(patient)]

    @staticmethod
    def _intervention_json(r: Any) -> dict[str, Any]:
        return {
            "id": r.id,
            "at": _iso(r.at),
            "end": _iso(r.end) if r.end else None,
            "kind": r.kind,
            "text": r.text,
            "author": r.author,
        }

    def add_intervention(
        self, patient: str, at: datetime, kind: str, text: str, author: str, end: datetime | None
    ) -> dict[str, Any]:
        from dashboard.reviews import ReviewError

        try:
            row = self._reviews().add_intervention(patient, at, kind, text, author=author, end=end)
        except ReviewError as exc:
            raise ValueError(str(exc)) from exc
        return self._intervention_json(row)

    # ------------------------------------------------------------------ trends, report

    def trends(
        self, patient: str, devices: list[str], start: datetime, end: datetime, tz: str
    ) -> dict[str, Any]:
        """``dashboard.analysis.trends`` per device, reviews applied, and the patient's markers."""
        from dashboard.analysis.trends import TrendConfig, compute_trends

        if self.history is None:
            raise BackendMissing("trends need a history store (dashboard --store)")
        out = []
        for device in devices:
            verdicts = {k: r.verdict for k, r in self._reviews().reviews(device=device).items()}
            try:
                t = compute_trends(
                    self.history, device, start, end, verdicts=verdicts, config=TrendConfig(tz=tz),
                    patient=patient,
                )  # fmt: skip
            except HistoryError as exc:
                raise BackendMissing(f"trends: {exc}") from exc
            out.append(t.to_json())
        return {"devices": out, "interventions": self.interventions(patient), "tz": tz}

    def report(
        self, site: str, patient: str, device: str, start: datetime, end: datetime, fmt: str, tz: str
    ) -> bytes:
        """``dashboard.report`` for one device of the patient over ``[start, end)``, reviews and
        intervention markers applied; HTML (self-contained) or PDF."""
        from dashboard.analysis.trends import TrendConfig
        from dashboard.report import build_report, render_html, render_pdf

        if self.history is None:
            raise BackendMissing("reports need a history store (dashboard --store)")
        reviews = self._reviews()
        verdicts = {k: r.verdict for k, r in reviews.reviews(device=device).items()}
        try:
            rep = build_report(
                self.history, device, start, end, verdicts=verdicts,
                interventions=reviews.interventions(patient, start, end), config=TrendConfig(tz=tz),
                patient=patient, site=site,
            )  # fmt: skip
        except HistoryError as exc:
            raise BackendMissing(f"report: {exc}") from exc
        return render_pdf(rep) if fmt == "pdf" else render_html(rep).encode()
