"""Grafana provisioning (deploy/grafana): every dashboard query names what the gateway really writes.

The truth is not a list kept in this test: a short simulated recording (spasms of three types, a
disconnect, lost frames) is captured and replayed through the real gateway (``neurospasm record`` and
``neurospasm replay``, the local line-protocol store), and the lines it wrote are parsed. Each query of
each dashboard must then (1) name only measurements, tags and fields found in those lines, tags where a
tag is needed (WHERE ... =~, GROUP BY, WITH KEY) and numeric fields under numeric functions, and (2) run
on a real InfluxDB loaded with those lines and return data: InfluxQL as Grafana sends it to
InfluxDB 2.7's v1-compatible /query (Debian's InfluxDB 1.x speaks the same InfluxQL).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.once import made_once
from support.servers import InfluxDB1

from ingest.outputs.lineproto import parse_line

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "influxdb.yaml"

# A short day in the life: three spasm types, a disconnect and lost frames (gaps), a battery.
SCENARIO = """
name = "grafana_truth"
description = "what the dashboards show: events of three types, gaps, device health"
seed = 1401
duration_s = 24.0
emg_rate_hz = 1000
acc_rate_hz = 50
channels = ["EMG L quad", "EMG R calf"]
rest_uv = 3.0

[[events]]
type = "phasic"
channel = "EMG L quad"
onset_s = 2.0
duration_s = 1.0
peak_uv = 220.0

[[events]]
type = "clonus"
channel = "EMG R calf"
onset_s = 6.0
frequency_hz = 5.5
cycles = 20
peak_uv = 300.0

[[events]]
type = "twitch"
channel = "EMG L quad"
onset_s = 16.0
duration_s = 0.15
peak_uv = 180.0

[faults]
loss_bursts = [{ at_s = 11.0, duration_s = 0.3 }]
disconnects = [{ at_s = 12.5, duration_s = 1.0 }]
battery_start_pct = 40.0
clock_drift_ppm = 35.0
jitter_ms = 10.0
"""


@dataclass
class Measurement:
    tags: dict[str, set[str]] = field(default_factory=dict)  # key -> values seen
    fields: dict[str, set[type]] = field(default_factory=dict)  # key -> Python types seen
    lines: int = 0


def neurospasm(*args: str, cwd: Path) -> None:
    exe = shutil.which("neurospasm", path=str(Path(sys.executable).parent))
    assert exe, f"no neurospasm console script beside {sys.executable}"
    res = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=180)
    assert res.returncode == 0, f"neurospasm {' '.join(args)}:\n{res.stdout}\n{res.stderr}"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, Measurement]]:
    """The line protocol the gateway wrote for the scenario, and the schema parsed from it."""

    def make(d: Path) -> None:
        (d / "scenario.toml").write_text(SCENARIO)
        neurospasm(
            "record", "--sim", str(d / "scenario.toml"), "--out", "rec.nsc", "--device-id", "wear-1", cwd=d
        )
        neurospasm("replay", "rec.nsc", "--speed", "max", "--no-progress", "--state-dir", "state", cwd=d)

    d = made_once(tmp_path_factory, "grafana-truth", make)  # one record + replay for both workers
    lines = [ln for p in sorted((d / "state" / "series").glob("*.lp")) for ln in p.read_text().splitlines()]
    schema: dict[str, Measurement] = {}
    for line in lines:
        meas, tags, fields, _ts = parse_line(line)
        m = schema.setdefault(meas, Measurement())
        m.lines += 1
        for k, v in tags.items():
            m.tags.setdefault(k, set()).add(v)
        for k, fv in fields.items():
            m.fields.setdefault(k, set()).add(type(fv))
    return lines, schema


def queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title or variable, InfluxQL) for every query Grafana will send."""
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for var in doc["templating"]["list"]:
            if var["type"] == "query":
                yield path.name, f"variable {var['name']}", var["query"]
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                assert target.get("rawQuery") is True, f"{path.name}: {panel['title']}: raw InfluxQL only"
                yield path.name, panel["title"], target["query"]


ALL_QUERIES = list(queries())
QUERY_IDS = [f"{f}:{t}:{i}" for i, (f, t, _) in enumerate(ALL_QUERIES)]


def names_in(query: str) -> dict[str, Any]:
    """The names a query uses, by role: measurement, tags, fields under a function, plain selections."""
    m = re.search(r'\bFROM "([^"]+)"', query)
    assert m, f'no FROM "measurement" in {query!r}'
    tags: set[str] = set(re.findall(r'"([^"]+)"\s*(?:=~|!~)', query))
    tags |= set(re.findall(r"\"([^\"]+)\"\s*(?:=|!=)\s*'", query))  # compared with a string literal
    if g := re.search(r"\bGROUP BY (.*?)(?: fill\(|$| ORDER | LIMIT )", query):
        tags |= set(re.findall(r'"([^"]+)"', g.group(1)))
    if k := re.search(r'WITH KEY = "([^"]+)"', query):
        tags.add(k.group(1))
    numeric = set(re.findall(r'\b(?:mean|max|min|sum|median|spread|stddev)\("([^"]+)"\)', query))
    anything = set(re.findall(r'\b(?:last|first|count)\("([^"]+)"\)', query))
    select = re.match(r"SELECT (.*?) FROM ", query)
    plain: set[str] = set()
    if select:
        no_calls = re.sub(r'\w+\("[^"]+"\)( AS "[^"]+")?', "", select.group(1))
        plain = set(re.findall(r'"([^"]+)"', no_calls))
    return {"measurement": m.group(1), "tags": tags, "numeric": numeric, "anything": anything, "plain": plain}


def test_the_replay_wrote_every_kind_of_record(written: tuple[list[str], dict[str, Measurement]]) -> None:
    """The truth is complete enough to judge the dashboards: all five measurements, clonus included."""
    _lines, schema = written
    assert {"emg_envelope", "acc", "spasm_event", "gap", "device_health"} <= set(schema)
    assert {"clonus", "phasic"} <= schema["spasm_event"].tags["type"], schema["spasm_event"].tags
    assert "disconnect" in schema["gap"].tags["cause"]


@pytest.mark.parametrize(("board", "title", "query"), ALL_QUERIES, ids=QUERY_IDS)
def test_query_names_what_the_writer_produces(
    written: tuple[list[str], dict[str, Measurement]], board: str, title: str, query: str
) -> None:
    _lines, schema = written
    used = names_in(query)
    where = f"{board}, {title!r}: {query}"
    meas = schema.get(used["measurement"])
    assert meas is not None, (
        f"{where}: measurement {used['measurement']!r} is never written ({sorted(schema)})"
    )
    for tag in used["tags"]:
        assert tag in meas.tags, (
            f"{where}: {tag!r} is not a tag of {used['measurement']} ({sorted(meas.tags)})"
        )
    for f in used["numeric"]:
        assert f in meas.fields, (
            f"{where}: {f!r} is not a field of {used['measurement']} ({sorted(meas.fields)})"
        )
        assert meas.fields[f] <= {float, int}, f"{where}: {f!r} is {meas.fields[f]}, not numeric"
    for f in used["anything"]:
        assert f in meas.fields, (
            f"{where}: {f!r} is not a field of {used['measurement']} ({sorted(meas.fields)})"
        )
    for name in used["plain"]:
        assert name in meas.fields or name in meas.tags, f"{where}: {name!r} is neither a field nor a tag"
    if not query.startswith("SHOW"):
        # Every panel is scoped to the chosen patient and device: the variables name real tags.
        assert '"patient" =~ /^$patient$/' in query and '"device" =~ /^$device$/' in query, where
        assert "$timeFilter" in query, f"{where}: no $timeFilter, the panel would scan all history"


def grafana_to_influxql(query: str, patient: str, device: str, t0_ns: int, t1_ns: int) -> str:
    """What Grafana sends for the query: its macros and variables expanded (the recording, 1 s buckets)."""
    return (
        query.replace("$timeFilter", f"time >= {t0_ns} AND time <= {t1_ns}")
        .replace("$__interval", "1s")
        .replace("$patient", re.escape(patient))
        .replace("$device", re.escape(device))
    )


@pytest.mark.slow
def test_every_query_runs_and_returns_data_on_a_real_influxdb(
    written: tuple[list[str], dict[str, Measurement]], influxdb1: InfluxDB1
) -> None:
    lines, schema = written
    for i in range(0, len(lines), 5000):
        influxdb1.write("\n".join(lines[i : i + 5000]) + "\n")
    (patient,) = schema["device_health"].tags["patient"]
    (device,) = schema["device_health"].tags["device"]
    stamps = [int(line.rsplit(" ", 1)[1]) for line in lines]
    empty = []
    for board, title, query in ALL_QUERIES:
        q = grafana_to_influxql(query, patient, device, min(stamps), max(stamps))
        rows = influxdb1.query(q)  # raises with the server's message on any InfluxQL error
        values = [v for r in rows for k, v in r.items() if k not in ("time", "key", "device", "channel")]
        if not any(v is not None and (isinstance(v, bool) or v != 0) for v in values):  # False is data
            empty.append(f"{board}, {title!r}: {q}")
    assert not empty, "queries that return no data for the replay:\n" + "\n".join(empty)


def test_dashboards_use_the_provisioned_data_source_and_are_well_formed() -> None:
    ds = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert len(ds) == 1
    source = ds[0]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    # The token comes from the environment, never from the file.
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_GRAFANA_TOKEN}"
    assert source["jsonData"]["dbName"].startswith("${") and source["url"].startswith("${")
    assert DASHBOARDS, "no dashboards"
    uids = set()
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        assert doc["uid"] not in uids
        uids.add(doc["uid"])
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for p in doc["panels"]:
            assert p["datasource"]["uid"] == source["uid"], f"{path.name}: {p['title']}"
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f"{path.name}: {p['title']}"
    titles = " ".join(json.loads(p.read_text())["title"] for p in DASHBOARDS)
    assert all(word in titles for word in ("live", "events", "health", "gaps"))
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "neurospasm.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_files_are_what_the_generator_makes() -> None:
    """The JSON files are generated (deploy/grafana/make_dashboards.py): edit the script, not the JSON."""
    spec = importlib.util.spec_from_file_location("make_dashboards", GRAFANA / "make_dashboards.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    made = {"live.json": mod.live(), "events.json": mod.events(), "health.json": mod.health()}
    assert sorted(made) == [p.name for p in DASHBOARDS]
    for name, board in made.items():
        assert json.loads((GRAFANA / "dashboards" / name).read_text()) == board.doc, (
            f"{name} differs from make_dashboards.py: run python deploy/grafana/make_dashboards.py"
        )
