"""Commands to the gateway over MQTT (docs/mqtt.md "Commands"): declared exercise sessions.

A physiotherapist or the wearer's app publishes on ``{prefix}/{site}/{patient}/{device}/cmd/declare``
(the broker's ACL lets a gateway read its site's ``cmd/#`` and an operator tool write it):

- ``{"kind": "exercise" | "physiotherapy", "minutes": N}``: a planned session starts now, for N
  minutes (omit ``minutes``: until cleared). Both kinds are the detector's ``exercise`` context.
- ``{"clear": true}``: the open session ends now.

Parsing is pure and strict: anything else is a ``CommandError`` with a one-line reason, which the
gateway logs once per topic and counts; a bad command never stops the gateway.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.config import DeclaredSlot

__all__ = ["MAX_MINUTES", "Clear", "CommandError", "Declare", "due_slots", "parse_declare", "parse_topic"]

#: The longest declarable session: a day's therapy block, not "forever" by mistake.
MAX_MINUTES = 600.0
#: Declarable kinds -> the detector's activity kind (``detectors.events.ActivityKind``).
DECLARE_KINDS = {"exercise": "exercise", "physiotherapy": "exercise"}


class CommandError(ValueError):
    """A command that is not understood (bad JSON, unknown key, value out of range)."""


@dataclass(frozen=True, slots=True)
class Declare:
    kind: str  # the detector's kind
    minutes: float | None  # None: until cleared


@dataclass(frozen=True, slots=True)
class Clear:
    pass


def parse_topic(topic: str, prefix: str, site: str, patient: str) -> tuple[str, str]:
    """(device, command) of ``{prefix}/{site}/{patient}/{device}/cmd/{command}``."""
    head = f"{prefix}/{site}/{patient}/"
    rest = topic[len(head) :].split("/") if topic.startswith(head) else []
    if len(rest) != 3 or rest[1] != "cmd" or not rest[0] or not rest[2]:
        raise CommandError(f"not a command topic (want {head}<device>/cmd/<command>)")
    return rest[0], rest[2]


def parse_declare(payload: bytes) -> Declare | Clear:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # (not UTF-8 or JSON; a huge int; nested too deep)
        raise CommandError(
            f"not JSON: {exc if isinstance(exc, ValueError) else 'nested too deeply'}"
        ) from None
    if not isinstance(obj, dict):
        raise CommandError("want a JSON object")
    if "clear" in obj:
        if obj != {"clear": True}:
            raise CommandError('clear: want exactly {"clear": true}')
        return Clear()
    unknown = set(obj) - {"kind", "minutes"}
    if unknown:
        raise CommandError(f"unknown key(s) {sorted(unknown)}")
    kind = obj.get("kind")
    if kind not in DECLARE_KINDS:
        raise CommandError(f"kind {kind!r}: want one of {sorted(DECLARE_KINDS)}")
    minutes = obj.get("minutes")
    if minutes is not None:
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes):
            raise CommandError(f"minutes {minutes!r}: want a number")
        if not 0 < minutes <= MAX_MINUTES:
            raise CommandError(f"minutes {minutes}: want 0 < minutes <= {MAX_MINUTES:g}")
        minutes = float(minutes)
    return Declare(DECLARE_KINDS[kind], minutes)


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def due_slots(
    slots: Sequence[DeclaredSlot], now: datetime, done: set[tuple[int, str]]
) -> list[tuple[tuple[int, str], Declare]]:
    """The configured sessions (``[[devices]] declared``) running at local time ``now`` and not
    yet declared (``done`` holds (slot index, date) keys): each with the minutes it has left, so
    a gateway started mid-session declares the rest of it."""
    out = []
    for i, slot in enumerate(slots):
        h, m = (int(x) for x in slot.at.split(":"))
        start = now.replace(hour=h, minute=m, second=0, microsecond=0)
        end = start + timedelta(minutes=slot.minutes)
        key = (i, start.date().isoformat())
        if slot.days and _WEEKDAYS[start.weekday()] not in slot.days:
            continue
        if start <= now < end and key not in done:
            left = (end - now).total_seconds() / 60.0
            out.append((key, Declare(DECLARE_KINDS[slot.kind], left)))
    return out
