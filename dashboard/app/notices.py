"""Notices: rules over the live state raise a notice in the view and on MQTT; staff acknowledge them.

Rules (thresholds from ``[dashboard] notices``; a rule with no threshold uses the default):

- ``inactive_min``   monitoring inactive (offline, stale, lead-off) for N minutes (default 10);
- ``tonic_s``        a tonic spasm longer than N seconds (default 30);
- ``per_hour``       more than N spasms in the last hour on one patient (default 30).

A notice is raised once per condition (a key), not on every evaluation, and raised again only after
the condition cleared. Notices and acknowledgements are appended to ``notices.jsonl`` in the
dashboard's state directory (one JSON object per line, fsynced), which is the acknowledgement log:
who acknowledged what, when, with an optional note. It survives restarts.

Each notice is published (QoS 1, not retained) on ``{prefix}/{site}/dashboard/notices``, a topic
outside the per-device tree so device subscribers (``+/+/+/events``) never see it (docs/mqtt.md).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dashboard.app.live import LiveHub, monitoring_verdict

__all__ = ["DEFAULT_RULES", "NoticeCenter"]

DEFAULT_RULES: dict[str, float] = {"inactive_min": 10.0, "tonic_s": 30.0, "per_hour": 30.0}
SCHEMA = "neurospasm.notice/1"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NoticeCenter:
    def __init__(self, hub: LiveHub, state_dir: Path, rules: dict[str, float] | None = None) -> None:
        unknown = set(rules or {}) - set(DEFAULT_RULES)
        if unknown:
            raise ValueError(
                f"dashboard.notices: unknown rule(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(DEFAULT_RULES)}"
            )
        self.hub = hub
        self.rules = {**DEFAULT_RULES, **(rules or {})}
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

    def _raise(self, key: str, site: str, patient: str, device: str | None, rule: str, text: str) -> None:
        if key in self._active_keys:
            return
        self._active_keys.add(key)
        now = time.time()
        notice_id = str(uuid.uuid4())
        notice: dict[str, Any] = {
            "schema": SCHEMA,
            "id": notice_id,
            "site": site,
            "patient": patient,
            "device": device,
            "rule": rule,
            "threshold": self.rules[rule],
            "text": text,
            "raised": _iso(now),
        }
        self.notices[notice_id] = {**notice, "acks": []}
        self._append({"record": "notice", "id": notice_id, "notice": notice})
        self._pending.append(notice)
        self.hub.broadcast(site, {"type": "notice", "data": self.notices[notice_id]})

    def _clear(self, key: str) -> None:
        self._active_keys.discard(key)

    def observe_event(self, item: dict[str, Any]) -> None:
        """Called for each new completed event (from the hub): tonic duration and hourly rate."""
        site, patient = item["site"], item["patient"]
        dur = float(item.get("duration_s") or 0.0)
        if item.get("type") == "tonic" and dur > self.rules["tonic_s"]:
            self._raise(
                f"tonic:{item['id']}",
                site,
                patient,
                item.get("device"),
                "tonic_s",
                f"tonic spasm of {dur:.0f} s on {item.get('channel')} (rule: longer than "
                f"{self.rules['tonic_s']:.0f} s)",
            )
        window = self._hour.setdefault((site, patient), deque())
        now = time.time()
        window.append(now)
        while window and now - window[0] > 3600:
            window.popleft()
        key = f"rate:{site}:{patient}"
        if len(window) > self.rules["per_hour"]:
            self._raise(
                key,
                site,
                patient,
                None,
                "per_hour",
                f"{len(window)} spasms in the last hour (rule: more than {self.rules['per_hour']:.0f})",
            )
        elif len(window) <= self.rules["per_hour"] / 2:
            self._clear(key)

    def evaluate(self, now: float | None = None) -> None:
        """Periodic check of the monitoring rule over every device."""
        now = time.time() if now is None else now
        for dev in list(self.hub.devices.values()):
            active, reason = monitoring_verdict(dev, self.hub.stale_after_s, now)
            key = f"inactive:{dev.site}:{dev.patient}:{dev.device}"
            if active:
                self._inactive_since.pop(dev.key, None)
                self._clear(key)
                continue
            since = self._inactive_since.setdefault(dev.key, now)
            minutes = (now - since) / 60.0
            if minutes >= self.rules["inactive_min"]:
                self._raise(
                    key,
                    dev.site,
                    dev.patient,
                    dev.device,
                    "inactive_min",
                    f"monitoring inactive for {minutes:.0f} min on {dev.device}: {reason}",
                )

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

    def acknowledge(self, notice_id: str, user: str, note: str = "") -> dict[str, Any]:
        notice = self.notices.get(notice_id)
        if notice is None:
            raise KeyError(notice_id)
        ack = {"by": user, "at": _iso(time.time()), "note": note[:500]}
        notice["acks"].append(ack)
        self._append({"record": "ack", "id": notice_id, "ack": ack})
        self.hub.broadcast(notice["site"], {"type": "notice", "data": notice})
        return notice
