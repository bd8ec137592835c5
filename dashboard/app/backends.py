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

log = logging.getLogger("neurospasm.dashboard")

__all__ = ["BackendMissing", "Backends", "open_history"]


class BackendMissing(Exception):
    """A data-side feature this checkout or configuration does not have (answered with 503)."""


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def open_history(spec: str) -> Any:
    """A HistoryStore from ``sqlite:PATH`` or ``influx:URL`` (``influx:http://host:8086/db``)."""
    scheme, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"dashboard.store {spec!r}: expected sqlite:PATH or influx:URL")
    if scheme == "sqlite":
        from dashboard.history.sqlite import SqliteHistory  # type: ignore[import-not-found,unused-ignore]

        return SqliteHistory(Path(rest))
    if scheme == "influx":
        from dashboard.history.influx import InfluxHistory  # type: ignore[import-not-found,unused-ignore]

        return InfluxHistory.from_url(rest)
    raise ValueError(f"dashboard.store {spec!r}: unknown store {scheme!r} (sqlite or influx)")


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

    @classmethod
    def open(cls, cfg: DashboardConfig, state_dir: Path) -> Backends:
        history = open_history(cfg.store) if cfg.store else None
        reviews = None
        mod = _optional("dashboard.reviews")
        if mod is not None:
            reviews = mod.ReviewStore(state_dir / "reviews.sqlite")
        return cls(history, reviews, state_dir)

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
        if self.history is None:
            return []
        return [(d.site, d.patient, d.device) for d in self.history.devices()]

    def events(self, devices: list[str], start: datetime, end: datetime) -> list[dict[str, Any]]:
        if self.history is None:
            return []
        return [event_json(e) for d in devices for e in self.history.events(d, start, end)]

    def event(self, event_id: str) -> dict[str, Any] | None:
        if self.history is None:
            return None
        row = self.history.event(event_id)
        return event_json(row) if row is not None else None

    def gaps(self, devices: list[str], start: datetime, end: datetime) -> list[dict[str, Any]]:
        if self.history is None:
            return []
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
            for g in self.history.gaps(d, start, end)
        ]

    def series(
        self, device: str, kind: str, start: datetime, end: datetime, max_points: int = 1500
    ) -> dict[str, Any] | None:
        if self.history is None:
            return None
        return dict(self.history.series(device, kind, start, end, max_points).to_json())

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
        return {k: self._review_json(v) for k, v in self.reviews_store.latest(event_ids).items()}

    def review(
        self, event_id: str, verdict: str, note: str, reviewer: str, device: str | None, patient: str
    ) -> dict[str, Any]:
        row = self._reviews().review(
            event_id, verdict, note=note, reviewer=reviewer, device=device, patient=patient
        )
        return self._review_json(row)

    def audit(self, event_id: str) -> list[dict[str, Any]]:
        return [self._review_json(r) for r in self._reviews().history(event_id)]

    def labels(self, patient: str, fmt: str) -> str:
        return str(self._reviews().export_labels(fmt, patient=patient, history=self.history))

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
        row = self._reviews().add_intervention(patient, at, kind, text, author=author, end=end)
        return self._intervention_json(row)

    # ------------------------------------------------------------------ trends, report

    def trends(self, patient: str, devices: list[str], start: datetime, end: datetime) -> dict[str, Any]:
        mod = _optional("dashboard.analysis")
        if mod is None or self.history is None:
            raise BackendMissing("trends need a store and dashboard.analysis")
        result = mod.trends(self.history, devices, start, end, reviews=self.reviews_store)
        return dict(result.to_json()) if hasattr(result, "to_json") else dict(result)

    def report(
        self, site: str, patient: str, devices: list[str], start: datetime, end: datetime, fmt: str
    ) -> bytes:
        mod = _optional("dashboard.report")
        if mod is None or self.history is None:
            raise BackendMissing("reports need a store and dashboard.report")
        if fmt == "pdf":
            pdf = mod.render_pdf(self.history, patient, devices, start, end, reviews=self.reviews_store)
            return bytes(pdf)
        html = mod.render_html(self.history, patient, devices, start, end, reviews=self.reviews_store)
        return html.encode() if isinstance(html, str) else bytes(html)
