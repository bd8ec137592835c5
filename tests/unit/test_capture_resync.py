"""Captures survive corruption: v2 records carry a sync marker and a CRC, the reader resynchronises
after a damaged record, v1 captures are still read, and a corrupt counter never becomes billions of
samples (in the session or in the EDF+ export)."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ingest.commands.cli import main as cli_main
from ingest.commands.record import simulate_scenario, write_sim
from ingest.commands.replay import run_replay
from ingest.files.recording import (
    DATA,
    MAGIC,
    RECORD_HEADER_BYTES,
    CaptureError,
    CaptureReader,
    CaptureRecord,
    CaptureWriter,
    decode_records,
)
from ingest.wire.protocol import EmgFrame, encode_frame

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cap") / "clean.nsc"
    sim = simulate_scenario("e2e_short", device="w-1", t0_host=T0)
    with CaptureWriter(p, device="w-1") as w:
        write_sim(w, sim)
    return p


def damaged_copy(clean: Path, tmp: Path, *, index: int, byte: int, bit: int) -> tuple[Path, CaptureRecord]:
    recs = CaptureReader(clean).records()
    victim = [r for r in recs if r.kind == DATA][index]
    raw = bytearray(clean.read_bytes())
    raw[victim.offset + byte] ^= 1 << bit
    out = tmp / "damaged.nsc"
    out.write_bytes(bytes(raw))
    return out, victim


@pytest.mark.parametrize(
    ("what", "byte", "bit"),
    [
        ("length, low bit", 21, 0),  # u32 length after sync, two u64 times and the kind
        ("length, high bit", 24, 7),  # a length of 2 GB: implausible, never allocated
        ("data", RECORD_HEADER_BYTES + 3, 2),
        ("sync marker", 1, 5),
    ],
)
def test_one_flipped_bit_loses_one_record(
    clean: Path, tmp_path: Path, what: str, byte: int, bit: int
) -> None:
    damaged, victim = damaged_copy(clean, tmp_path, index=120, byte=byte, bit=bit)
    good = CaptureReader(clean).records()
    r = CaptureReader(damaged)
    got = r.records()
    assert r.truncated is None
    assert len(r.corrupt) == 1 and r.corrupt[0][0] == victim.offset, what
    assert [x.offset for x in got] == [x.offset for x in good if x.offset != victim.offset]
    assert all(
        a.data == b.data for a, b in zip(got, [x for x in good if x.offset != victim.offset], strict=True)
    )


def test_replay_of_a_damaged_capture_gives_everything_but_the_damaged_record(
    clean: Path, tmp_path: Path
) -> None:
    damaged, _ = damaged_copy(clean, tmp_path, index=80, byte=21, bit=3)  # at 4 s: between spasms
    a = asyncio.run(run_replay(clean, state_dir=tmp_path / "a"))
    b = asyncio.run(run_replay(damaged, state_dir=tmp_path / "b"))
    assert len(a.events) == 3
    assert [e["id"] for e in b.events] == [e["id"] for e in a.events]
    # The lost record is a counted hole: a frames gap of its samples, nothing else changed.
    extra = [g for g in b.gaps if g["id"] not in {x["id"] for x in a.gaps}]
    assert extra and all(g["cause"] == "lost_frames" for g in extra)
    assert sum(g["samples_missing"] for g in extra if g["domain"] == "emg") < 200  # one chunk's worth
    edf = tmp_path / "d.edf"
    assert cli_main(["export-edf", str(damaged), "--out", str(edf)]) == 0


def write_v1(path: Path, header: object, records: list[tuple[float, int, bytes]]) -> None:
    h = json.dumps(header).encode()
    body = b"".join(struct.pack("<QBI", round(t * 1e9), k, len(d)) + d for t, k, d in records)
    path.write_bytes(struct.pack("<8sHI", MAGIC, 1, len(h)) + h + body)


def test_v1_captures_are_still_read(tmp_path: Path) -> None:
    p = tmp_path / "old.nsc"
    write_v1(
        p, {"format": "neurospasm.capture/1", "device": "w-0"}, [(T0, DATA, b"abc"), (T0 + 1, DATA, b"")]
    )
    r = CaptureReader(p)
    recs = r.records()
    assert r.version == 1 and r.device == "w-0"
    assert [(x.t_host, x.data, x.t_mono) for x in recs] == [(T0, b"abc", None), (T0 + 1, b"", None)]


def test_header_that_is_json_but_not_an_object_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "list.nsc"
    write_v1(p, [1, 2, 3], [])
    with pytest.raises(CaptureError, match=r"list\.nsc: header at byte offset 14 is JSON but not an object"):
        CaptureReader(p)


def test_a_counter_jump_of_2_to_the_31_is_corruption_not_billions_of_samples(
    clean: Path, tmp_path: Path
) -> None:
    recs = CaptureReader(clean).records()
    data = [r for r in recs if r.kind == DATA]
    mid = data[100]
    bogus = encode_frame(EmgFrame(7, (2**31 + 12345) & 0xFFFFFFFF, np.zeros((7, 2), dtype=np.int16)))
    forged = [*recs[: recs.index(mid) + 1], CaptureRecord(mid.t_host + 0.001, DATA, bogus, -1),
              *recs[recs.index(mid) + 1 :]]  # fmt: skip
    decoded = decode_records(forged, "w-1")
    assert all(g["samples_missing"] < 10_000 for g in decoded.gaps)  # no 2-billion-sample gap
    assert sum(b.dropped for b in decoded.boots) == 1
    out = tmp_path / "forged.nsc"
    with CaptureWriter(out, device="w-1") as w:
        for r in forged:
            w.write(r.t_host, r.kind, r.data, t_mono=r.t_mono)
    replayed = asyncio.run(run_replay(out, state_dir=tmp_path / "r"))  # the live session's rule too
    assert len(replayed.events) == 3 and all(g["samples_missing"] < 10_000 for g in replayed.gaps)
    edf = tmp_path / "forged.edf"
    assert cli_main(["export-edf", str(out), "--out", str(edf)]) == 0
    assert edf.stat().st_size < 4 * clean.stat().st_size  # bounded by the real data
