"""Checks shared by several test files: documented schemas, gap records against the simulator's truth."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jsonschema

from ingest.config import parse_config

DOCS = Path(__file__).resolve().parents[2] / "docs"


#: Current version of each payload's schema (event v2: issue 9 added context, clipped, rise_s).
VERSIONS = {"event": 2}


def schema(kind: str) -> dict[str, Any]:
    return json.loads((DOCS / "schemas" / f"{kind}.v{VERSIONS.get(kind, 1)}.json").read_text())


def validator(kind: str) -> jsonschema.Draft202012Validator:
    s = schema(kind)
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s, format_checker=jsonschema.FormatChecker())


def validate(kind: str, payload: dict[str, Any]) -> None:
    validator(kind).validate(payload)


def gap_key(g: dict[str, Any]) -> tuple[str, str, int | None]:
    return (g["domain"], g["cause"], g["samples_missing"])


# -- determinism ------------------------------------------------------------------------------


def assert_gaps_match(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Same count; per (domain, cause): same samples_missing; reboot gaps: times within 100 ms."""
    assert len(got) == len(want), (sorted(map(gap_key, got)), sorted(map(gap_key, want)))
    exact_got = sorted(gap_key(g) for g in got if g["cause"] != "reboot")
    exact_want = sorted(gap_key(g) for g in want if g["cause"] != "reboot")
    assert exact_got == exact_want
    from datetime import datetime

    def ts(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    rb_got = sorted((g["domain"], ts(g["start"]), ts(g["end"])) for g in got if g["cause"] == "reboot")
    rb_want = sorted(
        (g["domain"], g["t_host_start"], g["t_host_end"]) for g in want if g["cause"] == "reboot"
    )
    assert len(rb_got) == len(rb_want)
    for (d1, s1, e1), (d2, s2, e2) in zip(rb_got, rb_want, strict=True):
        assert d1 == d2
        assert abs(s1 - s2) < 0.1, (d1, s1 - s2)
        assert abs(e1 - e2) < 0.1, (d1, e1 - e2)


def gateway_config(tmp: Path, port: str) -> Any:
    return parse_config({
        "gateway": {"state_dir": str(tmp / "state"), "stale_after_s": 3.0},
        "devices": [{"id": "wearable-1", "port": port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.3}],
        "mqtt": {"enabled": False},
        "local": {"enabled": True},
        "spool": {"quota_mb": 64, "fsync": "never"},
    }, "<test>")  # fmt: skip


async def caught_up(gw: Any, within_s: float = 10.0) -> None:
    """Wait until every device pipeline has processed what its link received.

    A live test compares the gateway's gaps with the simulator's truth, which counts a frame as
    delivered once the gateway *read* it (``PtyServer.quiesce``); ``Gateway.drain`` then stops
    the pipelines, discarding chunks still queued. On a loaded machine the queue can hold the
    stream's last frames (and with them the knowledge of the gap before them), so wait for it
    to empty (bounded) instead of sleeping a fixed time.
    """
    deadline = time.monotonic() + within_s
    while any(r.unprocessed() for r in gw.devices.values()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway did not process its input within {within_s} s")
        await asyncio.sleep(0.01)
