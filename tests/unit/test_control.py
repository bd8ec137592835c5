"""Command parsing (ingest.stream.control): strict, one-line reasons, never an exception type
the gateway does not catch."""

from __future__ import annotations

import json

import pytest

from ingest.stream.control import Clear, CommandError, Declare, parse_declare, parse_topic


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
