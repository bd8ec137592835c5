"""The embedded store's parts: the strict line-protocol parser, the block codec and SqliteSink
(atomic batches under kill -9, idempotent re-delivery, bad records isolated), no server needed."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import history_data as hd

from dashboard.history.base import from_ns
from dashboard.history.sqlite import SqliteHistory
from ingest.config import parse_config
from ingest.outputs.lineproto import LineProtocolError, encode_columns, encode_point, parse_line, parse_lines
from ingest.outputs.sinks.base import SinkRejected, SinkUnavailable
from ingest.outputs.sinks.sqlite import (
    COMPACT_WINDOW_NS,
    MAX_BLOCK_NS,
    SQLITE_FILENAME,
    SqliteSink,
    decode_values,
    encode_values,
)

REPO = Path(__file__).resolve().parents[2]

names = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=12).filter(
    lambda s: not s.endswith("\\") and not s.startswith("#")
)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(st.characters(blacklist_characters="\n\r\x00", blacklist_categories=["Cs"]), max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(
    meas=names,
    tags=st.dictionaries(names, names, max_size=4),
    fields=st.dictionaries(names, values, min_size=1, max_size=5),
    ts=st.integers(-(2**62), 2**62),
)
def test_parse_line_inverts_encode_point(
    meas: str, tags: dict[str, str], fields: dict[str, object], ts: int
) -> None:
    line = encode_point(meas, tags, fields, ts)  # type: ignore[arg-type]
    got = parse_line(line.decode().rstrip("\n"))
    assert got == (meas, tags, fields, ts)
    assert all(type(got[2][k]) is type(v) for k, v in fields.items())


def test_parse_lines_reads_bulk_columns_exactly_and_names_the_byte_offset_of_a_bad_line() -> None:
    rng = np.random.default_rng(3)
    uv = np.rint(rng.normal(40, 30, 500) * 100) / 100
    t = 1_780_000_000_000_000_000 + np.arange(500, dtype=np.int64) * 20_000_000
    data = encode_columns("emg_envelope", {"device": "d", "channel": "ch1"}, {"uv": uv}, t, decimals=2)
    pts = parse_lines(data)
    assert [p[3] for p in pts] == t.tolist() and [p[2]["uv"] for p in pts] == uv.tolist()
    good = b"m,a=1 v=1 5\n"
    for bad, why in [
        (b"m,a=1 v=1\n", "no timestamp"),
        (b"m,a=1 v=nan 5\n", "not a number"),
        (b"m,a=1 v=1e999 5\n", "not finite"),
        (b"m,a=1 v=abc 5\n", "not a number"),
        (b"m,a v=1 5\n", "no '='"),
        (b'm v="open 5\n', "unterminated"),
        (b"m v=1 5 6\n", "timestamp"),
        (b"m v=1 5\r\n", "carriage return"),
        (b"m  5\n", "empty name"),
    ]:
        with pytest.raises(LineProtocolError, match=why) as exc:
            parse_lines(good + b"# comment\n\n" + bad)
        assert exc.value.offset == len(good) + len(b"# comment\n\n")


@pytest.mark.parametrize(
    "x",
    [
        np.rint(np.random.default_rng(1).normal(0, 300, 999) * 100) / 100,  # µV, 2 decimals
        np.rint(np.random.default_rng(2).normal(0, 1, 999) * 10_000) / 10_000,  # g, 4 decimals
        np.random.default_rng(3).normal(0, 1, 999),  # full precision
        np.array([3e12, -4e12]),  # integers too large for int32
        np.array([]),
    ],
)
def test_series_codec_gives_back_the_exact_values(x: np.ndarray) -> None:
    codec, blob = encode_values(x)
    assert np.array_equal(decode_values(codec, blob), x)
    if len(x) == 999 and codec != "f8":
        assert len(blob) < x.nbytes / 2  # compact: the point of the codec


def test_bad_records_are_rejected_alone_and_redelivery_is_idempotent(tmp_path: Path) -> None:
    ds = hd.build()
    path = tmp_path / SQLITE_FILENAME
    records = [
        *ds.records[:50],
        b"spasm_event,device=d id=1 zz\n",
        b'gap,device=d id="x" 5\n',
        *ds.records[50:],
    ]

    async def run() -> None:
        async with SqliteSink(path) as sink:
            with pytest.raises(SinkRejected) as exc:
                await sink.send(records)
            assert exc.value.bad == [50, 51] and "record 50: byte 0" in str(exc.value)
            assert "without tag 'cause'" in str(exc.value)
            await sink.send(ds.records)  # the whole batch again (at-least-once delivery)

    asyncio.run(run())
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    n_events = len({e["id"] for e in ds.events}) + 1  # + the other patient's
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == n_events
    assert db.execute("SELECT count(*) FROM gaps").fetchone()[0] == len(ds.gaps)
    assert db.execute("SELECT count(*) FROM health").fetchone()[0] == len(ds.health) + 1
    assert db.execute("SELECT sum(n) FROM series WHERE measurement='emg_envelope'").fetchone()[0] == sum(
        len(t) for t, _ in ds.envelope.values()
    )
    # Blocks: one per series (2 envelope channels, 3 acc axes) and record (2 a second); minute
    # windows two minutes older than the newest data are compacted into one block per series.
    blocks, size = db.execute("SELECT count(*), sum(length(ts) + length(vals)) FROM series").fetchone()
    text = sum(len(r) for r in ds.records if r.startswith((b"emg_envelope", b"acc")))
    per_window = db.execute(
        f"SELECT measurement, channel, field, t0_ns / {COMPACT_WINDOW_NS}, count(*) FROM series "
        "GROUP BY 1, 2, 3, 4"
    ).fetchall()
    assert len(per_window) == 5 * hd.SERIES_MINUTES and size < text / 4
    for i, row in enumerate(sorted(per_window)):
        assert row[4] == 1 if i % hd.SERIES_MINUTES < hd.SERIES_MINUTES - 2 else row[4] > 100, row
    assert blocks == sum(r[4] for r in per_window)
    spans = db.execute("SELECT max(t1_ns - t0_ns) FROM series").fetchone()[0]
    assert spans < MAX_BLOCK_NS
    assert db.execute("SELECT count(*) FROM points").fetchone()[0] == 0  # nothing unknown


def test_unknown_measurements_and_fields_are_kept_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / SQLITE_FILENAME
    lines = (
        b'spasm_event,channel=ch1,device=d,patient=p,type=tonic duration_s=2,id="e1",side="left" 10\n'
        b"weather,device=d temp_c=21.5 11\n"
        b"emg_envelope,channel=ch1,device=d,patient=p,site=s uv=1 12\n"  # an unexpected tag
    )

    async def run() -> None:
        async with SqliteSink(path) as sink:
            await sink.send([lines])

    asyncio.run(run())
    db = sqlite3.connect(path)
    assert db.execute("SELECT extra FROM events").fetchone()[0] == '{"side": "left"}'
    assert sorted(r[0] for r in db.execute("SELECT measurement FROM points")) == ["emg_envelope", "weather"]
    with SqliteHistory(path) as h:
        assert [e.duration_s for e in h.events("d", from_ns(0), from_ns(10**6))] == [2.0]


def test_a_sink_that_cannot_open_its_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    async def run() -> None:
        async with SqliteSink(tmp_path / "file" / SQLITE_FILENAME):
            pass

    with pytest.raises(SinkUnavailable, match="local store"):
        asyncio.run(run())


_WRITER = """
import asyncio, sys
from ingest.outputs.sinks.sqlite import SqliteSink
from ingest.outputs.lineproto import encode_point

async def main():
    async with SqliteSink(__import__("pathlib").Path(sys.argv[1])) as sink:
        k = 0
        while True:
            batch = [encode_point("spasm_event", {"device": "d", "channel": "ch1", "type": "twitch"},
                                  {"id": f"e-{k}-{i}", "duration_s": 0.3}, 10**18 + k * 1000 + i)
                     for i in range(50)]
            await sink.send(batch)
            print(k, flush=True)
            k += 1

asyncio.run(main())
"""


def test_kill_9_leaves_whole_batches_and_a_sound_database(tmp_path: Path) -> None:
    path = tmp_path / SQLITE_FILENAME
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_WRITER))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 5 and time.monotonic() < deadline:
        if proc.stdout.readline():
            seen += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert seen == 5
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = db.execute("SELECT count(*) FROM events").fetchone()[0]
    assert n >= 5 * 50 and n % 50 == 0  # every batch whole or absent
    per_batch = Counter(r[0].rsplit("-", 1)[0] for r in db.execute("SELECT id FROM events"))
    assert set(per_batch.values()) == {50}


def test_config_selects_the_sqlite_store() -> None:
    cfg = parse_config({"local": {"enabled": True, "format": "sqlite"}}, "<t>")
    assert cfg.local.format == "sqlite"
    from ingest.config import ConfigError

    with pytest.raises(ConfigError, match=r"local\.format"):
        parse_config({"local": {"format": "csv"}}, "<t>")


def test_the_read_only_history_sees_new_batches_while_the_gateway_writes(tmp_path: Path) -> None:
    ds = hd.build()
    path = tmp_path / SQLITE_FILENAME
    events = [r for r in ds.records if r.startswith(b"spasm_event,") and b"dev-b1" in r]

    async def run() -> None:
        async with SqliteSink(path) as sink:
            await sink.send(events[:5])
            with SqliteHistory(path) as h:
                assert len(h.events(hd.DEVICE, hd.T0, hd.T0 + timedelta(hours=hd.HOURS))) == 5
                await sink.send(events[5:9])  # the writer carries on while the reader is open
                assert len(h.events(hd.DEVICE, hd.T0, hd.T0 + timedelta(hours=hd.HOURS))) == 9
                with pytest.raises(sqlite3.OperationalError, match="readonly"):
                    h._db().execute("DELETE FROM events")

    asyncio.run(run())


def test_the_series_fast_path_gives_exactly_the_general_parsers_rows() -> None:
    from ingest.outputs.sinks.sqlite import _Rows, _rows_of, series_fast

    ds = hd.build()
    series = [r for r in ds.records if r.startswith((b"emg_envelope", b"acc"))]
    rng = np.random.default_rng(5)
    t = 1_780_000_000_000_000_000 + np.arange(40, dtype=np.int64) * 20_000_000
    odd = [
        # a device id with '_', a time going back (a new block), a block longer than a minute
        encode_columns("acc", {"device": "dev_1"}, {"x": rng.normal(size=40), "y": rng.normal(size=40)},
                       np.r_[t[:20], t[:20]]),
        encode_columns("emg_envelope", {"device": "d", "channel": "ch1"}, {"uv": np.arange(40.0)},
                       t * 0 + 1_780_000_000_000_000_000 + np.arange(40, dtype=np.int64) * 4_000_000_000),
    ]  # fmt: skip
    for rec in series + odd:
        fast, slow = _Rows(), _Rows()
        assert series_fast(rec, fast)
        _rows_of(parse_lines(rec), slow)
        assert fast.series == slow.series and fast.series
    assert len(_fast_rows(odd[1])) == 3  # 156 s of points every 4 s: blocks of at most 60 s
    # What the fast path leaves to the strict parser (which accepts or refuses it properly):
    for rec in [
        b"emg_envelope,device=d,channel=ch1 uv=1_0 5\n",  # numpy would read 10
        b"emg_envelope,device=d,channel=ch1 uv=1 +5\n",  # numpy would read 5
        b"emg_envelope,device=d,channel=ch1 uv=nan 5\n",
        b"emg_envelope,device=d,channel=ch1 uv=3i 5\n",
        b"acc,device=d x=1,y=2 5\nacc,device=d x=1 6\n",  # a field left out (NaN) on one line
        b"spasm_event,device=d,channel=c,type=tonic duration_s=2 5\n",
        b"emg_envelope,device=d,channel=ch1 uv=1\n",
    ]:
        assert not series_fast(rec, _Rows()), rec


def _fast_rows(rec: bytes) -> list[tuple[object, ...]]:
    from ingest.outputs.sinks.sqlite import _Rows, series_fast

    rows = _Rows()
    assert series_fast(rec, rows)
    return rows.series
