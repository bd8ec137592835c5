"""Command parsing (ingest.stream.control): strict, one-line reasons, never an exception type
the gateway does not catch."""

from __future__ import annotations

import json

import pytest

from ingest.stream.control import Clear, CommandError, Declare, due_slots, parse_declare, parse_topic


def test_declare_and_clear_parse() -> None:
    assert parse_declare(b'{"kind": "physiotherapy", "minutes": 45}') == Declare("exercise", 45.0)
    assert parse_declare(b'{"kind": "exercise"}') == Declare("exercise", None)
    assert parse_declare(b'{"clear": true}') == Clear()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{oops", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"kind": "yoga"}', "kind 'yoga'"),
        (b'{"kind": "exercise", "minutes": 0}', "minutes 0"),
        (b'{"kind": "exercise", "minutes": 601}', "minutes 601"),
        (b'{"kind": "exercise", "minutes": "ten"}', "want a number"),
        (b'{"kind": "exercise", "minutes": true}', "want a number"),
        (b'{"kind": "exercise", "patient_name": "x"}', "unknown key"),
        (b'{"clear": false}', "clear"),
        (json.dumps({"clear": True, "kind": "exercise"}).encode(), "clear"),
    ],
)
def test_bad_commands_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(CommandError, match=reason):
        parse_declare(payload)


def test_topic_names_device_and_command() -> None:
    assert parse_topic("p/s/pt/dev-1/cmd/declare", "p", "s", "pt") == ("dev-1", "declare")
    for bad in ("p/s/pt/dev-1/declare", "p/s/other/dev-1/cmd/declare", "p/s/pt/dev-1/cmd/a/b"):
        with pytest.raises(CommandError, match="not a command topic"):
            parse_topic(bad, "p", "s", "pt")


def test_configured_sessions_are_due_once_with_the_minutes_left() -> None:
    from datetime import datetime

    from ingest.config import DeclaredSlot

    slots = [
        DeclaredSlot(kind="physiotherapy", at="10:30", minutes=45, days=["mon", "wed"]),
        DeclaredSlot(at="18:00", minutes=30),
    ]
    wed = datetime(2026, 12, 2, 10, 45)  # a Wednesday, 15 min into the first slot
    done: set[tuple[int, str]] = set()
    due = due_slots(slots, wed, done)
    assert [(k, d.kind, round(d.minutes or 0, 3)) for k, d in due] == [((0, "2026-12-02"), "exercise", 30.0)]
    done.add(due[0][0])
    assert due_slots(slots, wed, done) == []  # declared once, not on every tick
    assert due_slots(slots, datetime(2026, 12, 3, 10, 45), set()) == []  # Thursday: not a slot day
    assert due_slots(slots, datetime(2026, 12, 2, 11, 15), set()) == []  # ended
    assert [k for k, _ in due_slots(slots, datetime(2026, 12, 3, 18, 0), set())] == [(1, "2026-12-03")]


def test_a_slot_crossing_midnight_or_with_a_bad_time_is_a_config_error() -> None:
    from pydantic import ValidationError

    from ingest.config import DeclaredSlot

    with pytest.raises(ValidationError, match="crosses midnight"):
        DeclaredSlot(at="23:30", minutes=60)
    with pytest.raises(ValidationError):
        DeclaredSlot(at="25:00", minutes=10)
