"""The typed status record: encoded once, for MQTT (status.v1) and the device_health point."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from ingest.outputs import encoders, payloads
from ingest.stream.records import StatusRecord, WorkerInfo

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "status.v1.json").read_text())
T = 1_764_633_600.25  # 2025-12-02T00:00:00.250Z

HEALTH = {
    "battery_pct": 87, "battery_mv": 3950, "contact": {"EMG A": True}, "signal_quality": {"EMG A": "ok"},
    "loss_pct": 0.125, "duplicates": 0, "clock_drift_ppm": 12.5, "timestamp_quality_ms": 0.8,
    "firmware": "1.4.0", "emg_rate_hz": 1000, "channels": ["EMG A"],
}  # fmt: skip


def gateway_record(monitoring: bool = True) -> StatusRecord:
    return StatusRecord(
        device="dev-a", state="online" if monitoring else "failed", monitoring=monitoring, updated=T,
        reason="" if monitoring else "pipeline failed: RuntimeError: x", pipeline_failures=2,
        health=HEALTH,
        activity={"now": "walking", "since": T - 60.0, "declared": False, "active_min_1h": 4.5},
        link={"bad_frames": 1, "decode_errors": {"crc": 1}, "reconnects": 0, "bytes": 100,
              "dropped_chunks": 0},
        spool={"bytes": 10, "quota_bytes": 100, "oldest_age_s": 0.0, "evicted_records": {}, "disk_full": None,
               "memory_records": 0, "disk_full_dropped": {}},
        sinks={"mqtt": {"connected": True}}, spool_bytes=10,
    )  # fmt: skip


def test_the_gateway_status_keeps_its_v1_key_order_and_validates() -> None:
    p = encoders.status_json(gateway_record())
    head = ["schema", "device", "state", "monitoring", "reason", "pipeline_failures", "updated"]
    assert list(p)[:7] == head
    assert list(p)[7 : 7 + len(HEALTH)] == list(HEALTH)
    assert list(p)[7 + len(HEALTH) :] == ["activity", "link", "spool", "sinks"]
    assert p["updated"] == "2025-12-02T00:00:00.250Z" and p["reason"] is None
    assert p["activity"]["since"] == "2025-12-01T23:59:00.250Z"  # formatted from UTC seconds
    jsonschema.validate(p, SCHEMA)
    off = encoders.status_json(gateway_record(monitoring=False))
    assert off["reason"] == "pipeline failed: RuntimeError: x" and off["pipeline_failures"] == 2
    jsonschema.validate(off, SCHEMA)
    # No reason given while not monitoring: the state says it.
    bare = StatusRecord("dev-a", "connecting", False, updated=T)
    assert encoders.status_json(bare)["reason"] == "connecting"


def test_the_worker_status_names_who_detects() -> None:
    r = StatusRecord(
        "dev-w", "online", True, updated=T, health=HEALTH,
        link={"bad_frames": 0, "batches": 3, "bad_batches": 0}, worker=WorkerInfo("w-1", T - 1.0, 123),
    )  # fmt: skip
    p = encoders.status_json(r)
    assert p["worker"] == {"id": "w-1", "since": "2025-12-01T23:59:59.250Z", "first_t_host_ns": 123}
    assert "spool" not in p and "sinks" not in p and "activity" not in p
    jsonschema.validate(p, SCHEMA)


def test_the_last_will_is_the_bytes_it_always_was() -> None:
    assert encoders.last_will("dev-a") == (
        b'{"schema": "neurospasm.status/1", "device": "dev-a", "state": "offline", "monitoring": false}'
    )
    jsonschema.validate(json.loads(encoders.last_will("dev-a")), SCHEMA)


def test_the_health_point_is_the_status_in_numbers() -> None:
    r = gateway_record()
    line = encoders.status_line(r, "p-1")
    assert line == encoders.health_line("dev-a", "p-1", {**HEALTH, "spool_bytes": 10, "monitoring": True}, T)
    assert line.startswith(b"device_health,device=dev-a,patient=p-1 ")
    assert b"monitoring=true" in line and b"spool_bytes=10" in line and b"contact_EMG\\ A=true" in line
    assert line.rstrip().endswith(str(round(T * 1e9)).encode())
    text = payloads.dumps(encoders.status_json(r))
    assert text.startswith(b'{"schema":"neurospasm.status/1","device":"dev-a"')
