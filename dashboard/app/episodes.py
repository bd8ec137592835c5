"""Events for the timeline: merge stored and live events, group bursts into episodes, count them.

Why here and not in the store: the timeline must show an event the moment MQTT delivers it, before
the store has flushed it, so stored and live events are merged by ``id`` (the same id everywhere,
docs/mqtt.md). Counting honours reviews (see ``counts``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

__all__ = ["EPISODE_GAP_S", "counts", "episodes", "event_json", "merge_events"]

#: Events whose onset follows the previous event's end by less than this belong to one episode
#: (a burst of twitches, a clonus train broken by the detector's refractory period).
EPISODE_GAP_S = 30.0


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def event_json(row: Any) -> dict[str, Any]:
    """An ``EventRow`` (dashboard.history) as the JSON the pages use (same keys as MQTT events)."""
    return {
        "id": row.id,
        "device": row.device,
        "patient": row.patient,
        "type": row.type,
        "channel": row.channel,
        "onset": row.onset.isoformat().replace("+00:00", "Z"),
        "offset": row.end.isoformat().replace("+00:00", "Z"),
        "duration_s": row.duration_s,
        "peak_uv": row.peak_uv,
        "mean_uv": row.mean_uv,
        "relative_amplitude": row.relative_amplitude,
        "frequency_hz": row.frequency_hz,
        "confidence": row.confidence,
        "context": row.context,
        "source": "store",
    }


def merge_events(stored: Iterable[dict[str, Any]], live: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union by id (the stored copy wins: it is the record), sorted by onset then id."""
    out: dict[str, dict[str, Any]] = {}
    for e in live:
        out.setdefault(e["id"], {**e, "source": e.get("source", "live")})
    for e in stored:
        out[e["id"]] = e
    return sorted(out.values(), key=lambda e: (e["onset"], e["id"]))


def episodes(events: list[dict[str, Any]], gap_s: float = EPISODE_GAP_S) -> list[dict[str, Any]]:
    """Group events (sorted by onset) into episodes: a new episode starts after a quiet ``gap_s``."""
    out: list[dict[str, Any]] = []
    for e in events:
        on, off = _ts(e["onset"]), _ts(e["onset"]) + float(e.get("duration_s") or 0.0)
        if out and on - out[-1]["_end"] < gap_s:
            ep = out[-1]
            ep["events"].append(e["id"])
            ep["_end"] = max(ep["_end"], off)
            ep["end"] = e.get("offset") or e["onset"]
            ep["types"][e["type"]] = ep["types"].get(e["type"], 0) + 1
            ep["peak_x"] = max(ep["peak_x"], float(e.get("relative_amplitude") or 0.0))
        else:
            out.append(
                {
                    "start": e["onset"],
                    "end": e.get("offset") or e["onset"],
                    "_end": off,
                    "events": [e["id"]],
                    "types": {e["type"]: 1},
                    "peak_x": float(e.get("relative_amplitude") or 0.0),
                }
            )
    for ep in out:
        ep["duration_s"] = round(ep.pop("_end") - _ts(ep["start"]), 3)
        ep["count"] = len(ep["events"])
    return out


def counts(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts as the clinician sees them, with the trends' rule (``dashboard.analysis.trends``):
    confirmed and unreviewed events are counted; "unsure" ones are counted separately; "not a
    spasm" ones are excluded (shown as their own number, never in a count)."""
    by_review: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for e in events:
        verdict = (e.get("review") or {}).get("verdict") or "unreviewed"
        by_review[verdict] += 1
        if verdict not in ("not_spasm", "unsure"):
            by_type[e["type"]] += 1
    return {
        "spasms": sum(by_type.values()),
        "by_type": dict(sorted(by_type.items())),
        "detected": len(events),
        "confirmed": by_review["confirmed"],
        "not_spasm": by_review["not_spasm"],
        "unsure": by_review["unsure"],
        "unreviewed": by_review["unreviewed"],
    }
