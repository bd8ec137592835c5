"""Writes the dashboards in deploy/grafana/dashboards/ (run: python deploy/grafana/make_dashboards.py).

The JSON files are what Grafana loads and what tests/servers/test_grafana.py checks; this script only keeps
their many repeated parts (data source, variables, layout) consistent. Edit here, run it, commit both.
Queries are InfluxQL against the measurements of docs/influx-schema.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "influxdb", "uid": "neurospasm-influxdb"}
# Every query is scoped to the chosen patient and device(s): one series set per wearable.
SCOPE = '"patient" =~ /^$patient$/ AND "device" =~ /^$device$/ AND $timeFilter'


def variables() -> dict[str, Any]:
    def var(name: str, query: str, multi: bool) -> dict[str, Any]:
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": DS,
            "query": query,
            "definition": query,
            "refresh": 2,
            "includeAll": multi,
            "multi": multi,
            "sort": 1,
            "current": {},
        }

    return {
        "list": [
            var("patient", 'SHOW TAG VALUES FROM "device_health" WITH KEY = "patient"', False),
            var(
                "device",
                'SHOW TAG VALUES FROM "device_health" WITH KEY = "device" WHERE "patient" =~ /^$patient$/',
                True,
            ),
        ]
    }


class Board:
    def __init__(self, uid: str, title: str, description: str, time_from: str, refresh: str) -> None:
        self.doc: dict[str, Any] = {
            "uid": uid,
            "title": title,
            "description": description,
            "tags": ["neurospasm"],
            "schemaVersion": 39,
            "version": 1,
            "editable": False,
            "graphTooltip": 1,
            "time": {"from": time_from, "to": "now"},
            "refresh": refresh,
            "timezone": "browser",
            "templating": variables(),
            "annotations": {"list": []},
            "panels": [],
        }
        self.x = self.y = 0
        self.row_h = 0

    def panel(
        self,
        title: str,
        kind: str,
        queries: list[str],
        *,
        w: int = 12,
        h: int = 8,
        unit: str | None = None,
        description: str = "",
        fmt: str = "time_series",
        extra: dict[str, Any] | None = None,
    ) -> None:
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        targets = [
            {"refId": chr(ord("A") + i), "datasource": DS, "rawQuery": True, "resultFormat": fmt, "query": q}
            for i, q in enumerate(queries)
        ]
        p: dict[str, Any] = {
            "id": len(self.doc["panels"]) + 1,
            "title": title,
            "description": description,
            "type": kind,
            "datasource": DS,
            "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
            "options": {},
        }
        p.update(extra or {})
        self.doc["panels"].append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def write(self, name: str) -> None:
        OUT.mkdir(exist_ok=True)
        (OUT / name).write_text(json.dumps(self.doc, indent=2, ensure_ascii=False) + "\n")


def q(select: str, measurement: str, group: str = "", *, where: str = "", tail: str = "") -> str:
    """One InfluxQL query, scoped to the chosen patient and device(s) and the dashboard's time range."""
    text = f'SELECT {select} FROM "{measurement}" WHERE {where + " AND " if where else ""}{SCOPE}'
    return text + (f" GROUP BY {group}" if group else "") + tail


BARS = {"defaults": {"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}}, "overrides": []}
EVERY = 'time($__interval), "device" fill(none)'


def live() -> Board:
    b = Board(
        "neurospasm-live",
        "neurospasm: live",
        "Live traces of one wearable: sEMG envelope per channel, accelerometer, monitoring, latest events.",
        "now-5m",
        "5s",
    )
    b.panel(
        "Monitoring",
        "stat",
        [q('last("monitoring")', "device_health", '"device"')],
        w=6,
        h=4,
        description="false: the wearable is not streaming or not analysed; no events then means no data.",
    )
    b.panel(
        "Battery", "stat", [q('last("battery_pct")', "device_health", '"device"')], w=6, h=4, unit="percent"
    )
    b.panel("Events in the window", "stat", [q('count("duration_s")', "spasm_event", '"type"')], w=12, h=4)
    b.panel(
        "sEMG envelope",
        "timeseries",
        [q('mean("uv")', "emg_envelope", 'time($__interval), "channel" fill(none)')],
        w=24,
        h=10,
        unit="µV",
    )
    b.panel(
        "Accelerometer",
        "timeseries",
        [q('mean("x") AS "x", mean("y") AS "y", mean("z") AS "z"', "acc", "time($__interval) fill(none)")],
        w=24,
        h=8,
        unit="g",
    )
    cols = '"type", "channel", "duration_s", "peak_uv", "relative_amplitude", "frequency_hz", "confidence"'
    b.panel(
        "Latest events",
        "table",
        [q(cols, "spasm_event", tail=" ORDER BY time DESC LIMIT 50")],
        w=24,
        h=8,
        fmt="table",
    )
    return b


def events() -> Board:
    b = Board(
        "neurospasm-events",
        "neurospasm: events",
        "How often, how long and how strong: spasm events by type per hour and per day, durations, "
        "amplitudes, clonus frequency.",
        "now-7d",
        "1m",
    )
    per_hour = q('count("duration_s")', "spasm_event", 'time(1h), "type" fill(0)')
    b.panel("Events per hour, by type", "timeseries", [per_hour], extra={"fieldConfig": BARS})
    b.panel(
        "Events per day, by type",
        "barchart",
        [q('count("duration_s")', "spasm_event", 'time(1d), "type" fill(0)')],
    )
    b.panel(
        "Duration per day, by type (mean and longest)",
        "timeseries",
        [
            q(
                'mean("duration_s") AS "mean", max("duration_s") AS "longest"',
                "spasm_event",
                'time(1d), "type" fill(none)',
            )
        ],
        unit="s",
    )
    b.panel(
        "Strength per day, by type",
        "timeseries",
        [
            q('max("peak_uv") AS "peak"', "spasm_event", 'time(1d), "type" fill(none)'),
            q('mean("relative_amplitude") AS "x baseline"', "spasm_event", 'time(1d), "type" fill(none)'),
        ],
        unit="µV",
        description="Peak envelope (µV) and the peak relative to the resting baseline.",
    )
    b.panel(
        "Clonus frequency",
        "timeseries",
        [
            q(
                'mean("frequency_hz")',
                "spasm_event",
                'time(1d), "channel" fill(none)',
                where="\"type\" = 'clonus'",
            )
        ],
        unit="hertz",
    )
    b.panel("Events by channel", "piechart", [q('count("duration_s")', "spasm_event", '"channel"')])
    cols = (
        '"type", "channel", "duration_s", "peak_uv", "mean_uv", "relative_amplitude", "frequency_hz", '
        '"confidence", "id"'
    )
    b.panel(
        "All events",
        "table",
        [q(cols, "spasm_event", tail=" ORDER BY time DESC LIMIT 1000")],
        w=24,
        h=10,
        fmt="table",
    )
    return b


def health() -> Board:
    b = Board(
        "neurospasm-health",
        "neurospasm: device health and gaps",
        "Is the wearable monitored? Battery, link loss, clock, the gateway's spool, and every gap: "
        "no data is not no spasms.",
        "now-24h",
        "30s",
    )
    b.panel(
        "Monitoring",
        "state-timeline",
        [q('last("monitoring")', "device_health", 'time($__interval), "device" fill(previous)')],
        w=24,
        h=5,
    )
    b.panel("Battery", "timeseries", [q('mean("battery_pct")', "device_health", EVERY)], unit="percent")
    b.panel("Battery voltage", "timeseries", [q('mean("battery_mv")', "device_health", EVERY)], unit="mvolt")
    b.panel("Frames lost", "timeseries", [q('max("loss_pct")', "device_health", EVERY)], unit="percent")
    b.panel(
        "Device clock drift", "timeseries", [q('mean("clock_drift_ppm")', "device_health", EVERY)], unit="ppm"
    )
    b.panel(
        "Timestamp quality",
        "timeseries",
        [q('max("timestamp_quality_ms")', "device_health", EVERY)],
        unit="ms",
        description="Spread of the clock fit (device counter to UTC): event times are this good.",
    )
    b.panel(
        "Gateway spool on disk",
        "timeseries",
        [q('max("spool_bytes")', "device_health", EVERY)],
        unit="bytes",
        description="Grows while a sink (broker, database) is unreachable; shrinks when it is back.",
    )
    b.panel(
        "Time without sEMG per hour, by cause",
        "timeseries",
        [q('sum("duration_s")', "gap", 'time(1h), "cause" fill(0)', where="\"domain\" = 'emg'")],
        unit="s",
        extra={"fieldConfig": {**BARS, "defaults": {**BARS["defaults"], "unit": "s"}}},
    )
    b.panel(
        "Gaps per hour, by cause and domain",
        "timeseries",
        [q('count("duration_s")', "gap", 'time(1h), "cause", "domain" fill(0)')],
    )
    b.panel(
        "Gaps",
        "table",
        [
            q(
                '"cause", "domain", "duration_s", "samples_missing", "id"',
                "gap",
                tail=" ORDER BY time DESC LIMIT 500",
            )
        ],
        w=24,
        h=10,
        fmt="table",
    )
    return b


if __name__ == "__main__":
    live().write("live.json")
    events().write("events.json")
    health().write("health.json")
