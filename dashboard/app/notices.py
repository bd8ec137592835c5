"""Notices: rules raise a notice in the view and on MQTT; staff acknowledge them.

The rules and their thresholds are ``dashboard.analysis.notices`` (``NoticeRules``: monitoring
inactive for N minutes, a tonic spasm longer than N s, more than N spasms per hour), configured in
``[dashboard.notices]``. With a history store they are evaluated on its rows every
``notice_eval_s`` (15 s by default; notice ids are deterministic, so re-evaluation never raises
one twice, across restarts too). Without a store the same thresholds are applied to what arrives
over MQTT, so a dashboard with only a broker still warns.

Notices and acknowledgements are appended to ``notices.jsonl`` in the dashboard's state directory
(one JSON object per line, fsynced): the acknowledgement log, who acknowledged what, when, with an
optional note. It survives restarts.

Each notice is published (QoS 1, not retained) on ``{prefix}/{site}/dashboard/notices``, a topic
outside the per-device tree so device subscribers (``+/+/+/events``) never see it (docs/mqtt.md).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dashboard.analysis.notices import NoticeRules, evaluate
from dashboard.app.live import LiveHub, monitoring_verdict

log = logging.getLogger("neurospasm.dashboard")

__all__ = ["SCHEMA", "NoticeCenter"]

SCHEMA = "neurospasm.notice/1"
_NS = uuid.UUID("0b7f3c2a-4d1e-5c6b-8a9f-1e2d3c4b5a69")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NoticeCenter:
    def __init__(self, hub: LiveHub, state_dir: Path, rules: dict[str, Any] | None = None) -> None:
        self.hub = hub
        self.rules = NoticeRules.from_dict(rules or {}, "dashboard.notices")
        self.started = datetime.now(UTC)
        self._last_history_eval = 0.0
        self.path = state_dir / "notices.jsonl"
        self.notices: dict[str, dict[str, Any]] = {}
        self._active_keys: set[str] = set()
        self._inactive_since: dict[tuple[str, str, str], float] = {}
        self._hour: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._load()

    # ------------------------------------------------------------------ the log

    def _load(self) -> None:
        if not self.path.exists():
            return
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: line {n}: not JSON ({exc})") from exc
            if rec.get("record") == "notice":
                self.notices[rec["id"]] = {**rec["notice"], "acks": []}
            elif rec.get("record") == "ack" and rec.get("id") in self.notices:
                self.notices[rec["id"]]["acks"].append(rec["ack"])

    def _append(self, rec: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a") as fh:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ raising

    def _raise(
        self,
        key: str,
        site: str,
        patient: str,
        device: str | None,
        rule: str,
        text: str,
        at: str | None = None,
    ) -> None:
        """Raise once per ``key`` (the notice id is derived from it, so it is stable)."""
        notice_id = str(uuid.uuid5(_NS, key))
        if key in self._active_keys or notice_id in self.notices:
            self._active_keys.add(key)
            return
        self._active_keys.add(key)
        now = time.time()
        notice: dict[str, Any] = {
            "schema": SCHEMA,
            "id": notice_id,
            "site": site,
            "patient": patient,
            "device": device,
            "rule": rule,
            "text": text,
            "at": at or _iso(now),
            "raised": _iso(now),
        }
        self.notices[notice_id] = {**notice, "acks": []}
        self._append({"record": "notice", "id": notice_id, "notice": notice})
        self._pending.append(notice)
        self.hub.broadcast(site, {"type": "notice", "data": self.notices[notice_id]})

    def _clear(self, key: str) -> None:
        self._active_keys.discard(key)

    def observe_event(self, item: dict[str, Any], history: bool) -> None:
        """Each new completed event from MQTT. With a store, the store's rows are judged instead
        (``evaluate_history``); without one, tonic duration and hourly rate are judged here."""
        if history:
            return
        site, patient = item["site"], item["patient"]
        dur = float(item.get("duration_s") or 0.0)
        tonic = self.rules.tonic_longer_than_s
        if tonic is not None and item.get("type") == "tonic" and dur > tonic:
            self._raise(
                f"live:tonic_long:{item.get('device')}:{item['id']}",
                site,
                patient,
                item.get("device"),
                "tonic_long",
                f"Tonic spasm of {dur:.0f} s on {item.get('channel')} (longer than {tonic:g} s).",
            )
        rate = self.rules.spasms_per_hour_above
        if rate is None:
            return
        window = self._hour.setdefault((site, patient), deque())
        now = time.time()
        window.append(now)
        while window and now - window[0] > 3600:
            window.popleft()
        hour = int(now // 3600)
        key = f"live:rate:{site}:{patient}:{hour}"
        if len(window) > rate:
            self._raise(
                key, site, patient, None, "rate", f"{len(window)} spasms in the last hour (more than {rate})."
            )

    def evaluate_live(self, now: float | None = None) -> None:
        """Without a store: the inactivity rule on the live state of every device."""
        now = time.time() if now is None else now
        minutes_rule = self.rules.inactive_minutes
        for dev in list(self.hub.devices.values()):
            active, reason = monitoring_verdict(dev, self.hub.stale_after_s, now)
            if active:
                since = self._inactive_since.pop(dev.key, None)
                if since is not None:
                    self._clear(f"live:inactive:{dev.site}:{dev.patient}:{dev.device}:{since:.0f}")
                continue
            since = self._inactive_since.setdefault(dev.key, now)
            minutes = (now - since) / 60.0
            if minutes_rule is not None and minutes >= minutes_rule:
                self._raise(
                    f"live:inactive:{dev.site}:{dev.patient}:{dev.device}:{since:.0f}",
                    dev.site,
                    dev.patient,
                    dev.device,
                    "inactive",
                    f"Monitoring inactive for {minutes:.0f} min on {dev.device}: {reason}. "
                    "No spasms in this time does not mean no spasms.",
                    _iso(since),
                )

    def evaluate_history(
        self, history: Any, reviews: Any, devices: list[tuple[str, str, str]], now: datetime | None = None
    ) -> None:
        """With a store: ``dashboard.analysis.notices.evaluate`` over the last day of rows of each
        (site, patient, device). Blocking (store queries): run it in a worker thread."""
        now = now or datetime.now(UTC)
        # The window starts at a whole hour at most a day back, and never before the device's first
        # status: a stretch "inactive since the window began" would otherwise get a new start (so a
        # new id) at every evaluation, and a new device would be "inactive" before it existed.
        day_back = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
        first_seen = {(d.patient, d.device): d.first_seen for d in history.devices()}
        for site, patient, device in devices:
            anchor = max(day_back, first_seen.get((patient, device), day_back))
            events = history.events(device, anchor, now + timedelta(seconds=1))
            health = history.health(device, anchor, now + timedelta(seconds=1))
            verdicts = reviews.verdicts([e.id for e in events]) if reviews is not None else {}
            for n in evaluate(
                self.rules,
                device=device,
                patient=patient,
                start=anchor,
                now=now,
                events=events,
                health=health,
                verdicts=verdicts,
            ):
                self._raise(f"history:{n.id}", site, patient, device, n.rule, n.text, n.at.isoformat())

    async def flush(self) -> None:
        """Publish raised notices on MQTT; kept for the next flush while the broker is away."""
        while self._pending:
            n = self._pending[0]
            if not await self.hub.publish(f"{self.hub.prefix}/{n['site']}/dashboard/notices", n):
                return
            self._pending.pop(0)

    # ------------------------------------------------------------------ reading, acknowledging

    def visible(self, sites: frozenset[str] | None) -> list[dict[str, Any]]:
        rows = [n for n in self.notices.values() if sites is None or n["site"] in sites]
        return sorted(rows, key=lambda n: n["raised"], reverse=True)

    def rules_json(self) -> dict[str, Any]:
        return {
            "inactive_minutes": self.rules.inactive_minutes,
            "tonic_longer_than_s": self.rules.tonic_longer_than_s,
            "spasms_per_hour_above": self.rules.spasms_per_hour_above,
        }

    def acknowledge(self, notice_id: str, user: str, note: str = "") -> dict[str, Any]:
        notice = self.notices.get(notice_id)
        if notice is None:
            raise KeyError(notice_id)
        ack = {"by": user, "at": _iso(time.time()), "note": note[:500]}
        notice["acks"].append(ack)
        self._append({"record": "ack", "id": notice_id, "ack": ack})
        self.hub.broadcast(notice["site"], {"type": "notice", "data": notice})
        return notice
