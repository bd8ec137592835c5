"""Serial vendor decoders do not care where the transport cuts the byte stream.

A pty (or a Bluetooth RFCOMM socket) hands the gateway whatever the kernel had: a packet may be
split anywhere, several packet groups may arrive in one read. A decoder that dropped a good
packet after a partial read, or re-based its counter on a split timestamp, would report a gap
that never happened (the flaky extra 16-sample gap once seen in the live Shimmer test looked
like one). Here the simulator's personality makes the bytes of a few seconds with whole packet
groups lost (the fault injector's truth says which), and the decoder is fed that stream

* cut once at every byte offset of the start (command replies, first packets) and of a window
  of one packet every sixth of the stream,
* and in chunks of every size from 1 byte to one packet (its first 2 kB), and a few larger ones
  (its first 40 %),

and must yield exactly the same samples every time, with holes exactly where the truth has them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from firmware_sim.device import SignalSource
from firmware_sim.faults import FaultInjector
from firmware_sim.personalities import PersonalityDevice, make_device
from firmware_sim.scenario import parse_scenario
from firmware_sim.signals import synthesize
from ingest.wire.kinds import decoder_for
from ingest.wire.protocol import EmgFrame, Frame


def _stream(kind: str) -> tuple[bytes, list[dict[str, object]], int]:
    """(the bytes the device sent, the truth's EMG gaps, bytes per packet)."""
    sc = parse_scenario(
        {
            "name": "chunking", "seed": 4, "duration_s": 1.0, "emg_rate_hz": 1000, "acc_rate_hz": 50,
            "channels": ["EMG L quad", "EMG R quad"],
            "events": [{"type": "phasic", "channel": "EMG L quad", "onset_s": 0.5, "duration_s": 0.5,
                        "peak_uv": 250.0}],
            # short bursts: a BITalino's 4-bit sequence counts at most 15 lost frames
            "faults": {"frame_loss_rate": 0.1, "seed": 4,
                       "loss_bursts": [{"at_s": 0.6, "duration_s": 0.01}]},
        },
        "<chunking>",
    )  # fmt: skip
    rec = synthesize(sc)
    dev = make_device(kind, SignalSource.from_recording(rec), seed=sc.seed)
    assert isinstance(dev, PersonalityDevice)
    p = dev.personality
    inj = FaultInjector.from_scenario(sc, rec, emg_rate_hz=p.emg_rate_hz, acc_rate_hz=p.acc_rate_hz)
    dev.frame_filter = inj
    for cmd in decoder_for(kind).start_commands():
        dev.handle_bytes(cmd.data)
    out = bytearray()
    sizes = []
    for t in np.arange(0.0, sc.duration_s, 0.005):
        inj.advance(float(t), float(t))
        for chunk in dev.frames_until(float(t)):
            out += chunk
            sizes.append(len(chunk))
    gaps = [g for g in inj.expected_gaps() if g["domain"] == "emg"]
    group = max(set(sizes), key=sizes.count)
    return bytes(out), gaps, group // p.block_samples


def _samples(kind: str, pieces: list[bytes]) -> tuple[list[tuple[int, int]], np.ndarray, dict[str, int]]:
    """Feed the pieces in order: (counter runs as (first, n)), all EMG samples, error counts."""
    dec = decoder_for(kind)
    frames: list[Frame] = []
    for piece in pieces:
        frames += dec.feed(piece)
    emg = [f for f in frames if isinstance(f, EmgFrame)]
    runs: list[tuple[int, int]] = []
    for f in emg:
        c, n = int(f.counter), len(f.samples)
        if runs and runs[-1][0] + runs[-1][1] == c:
            runs[-1] = (runs[-1][0], runs[-1][1] + n)
        else:
            runs.append((c, n))
    data = np.concatenate([np.asarray(f.samples, dtype=np.float64) for f in emg])
    return runs, data, dict(dec.stats.errors)


@pytest.mark.parametrize("kind", ["shimmer", "cyton", "bitalino"])
def test_any_cut_decodes_to_the_same_samples_and_holes(kind: str) -> None:
    stream, gaps, packet = _stream(kind)
    assert len(gaps) >= 3, gaps
    runs, _, errors = _samples(kind, [stream])
    assert errors == {}, errors
    # holes exactly where the truth has them (the counters are the device's, from 0 at START;
    # the last group may wait for a successor to confirm it)
    holes = [(a + n, b - (a + n)) for (a, n), (b, _) in itertools.pairwise(runs)]
    want = [(int(g["start_counter"]), int(g["samples_missing"])) for g in gaps]  # type: ignore[call-overload]
    if kind == "shimmer":
        assert holes == want, (holes, want)
    else:
        # Cyton (8-bit) and BITalino (4-bit) counters wrap: the decoder's counter is its own
        # unwrapped one, so compare hole sizes
        assert [n for _, n in holes] == [n for _, n in want], (holes, want)
    # cut once at every offset of the start (the command replies, about 130 bytes for a Shimmer,
    # and the first packets), and of one packet every sixth of the stream
    # (each window is checked on the stream up to 40 packets past it, against that prefix's own
    # decoding: what a cut could change is right there)
    windows = [(0, 160 + 3 * packet)]
    windows += [(k, k + packet + 1) for k in range(len(stream) // 6, len(stream), len(stream) // 6)]
    for a, b in windows:
        limit = min(len(stream), b + 40 * packet)
        part = stream[:limit]
        ref = _samples(kind, [part])
        for cut in range(a, min(b, limit)):
            r, d, e = _samples(kind, [part[:cut], part[cut:]])
            assert (r, e) == (ref[0], ref[2]), cut
            assert np.array_equal(d, ref[1]), cut
    # and in chunks of a few sizes larger than a packet on the first 40 % of the stream (its
    # command replies, first packets and first holes)
    head = stream[: len(stream) * 2 // 5]
    head_runs, head_data, head_errors = _samples(kind, [head])
    assert len(head_runs) >= 2  # at least one hole inside
    for size in [2 * packet + 1, 5 * packet - 1, 16 * packet + 3, 40 * packet + 7]:
        pieces = [head[i : i + size] for i in range(0, len(head), size)]
        r, d, e = _samples(kind, pieces)
        assert (r, e) == (head_runs, head_errors), size
        assert np.array_equal(d, head_data), size
    # byte-sized pieces (every size up to a packet) on the first 2 kB
    start = stream[:2048]
    start_runs, start_data, start_errors = _samples(kind, [start])
    for size in range(1, packet + 2):
        pieces = [start[i : i + size] for i in range(0, len(start), size)]
        r, d, e = _samples(kind, pieces)
        assert (r, e) == (start_runs, start_errors), size
        assert np.array_equal(d, start_data), size


@pytest.mark.parametrize("kind", ["shimmer", "cyton", "bitalino"])
def test_any_cut_of_a_stream_with_line_noise_decodes_the_same(kind: str) -> None:
    """With bursts of line noise inserted (random bytes, some inside packets) the decoder must
    resynchronise the same way wherever the stream is cut: the samples and holes may not
    depend on how much happened to be buffered (error counts may: a skipped run split over two
    reads counts twice)."""
    clean, _, packet = _stream(kind)
    rng = np.random.default_rng(7)
    stream = bytearray(clean)
    for at in sorted(rng.integers(600, len(clean), size=6), reverse=True):
        noise = rng.integers(0, 256, size=int(rng.integers(1, 3 * packet))).astype(np.uint8)
        stream[int(at) : int(at)] = noise.tobytes()
    stream_b = bytes(stream)
    runs, data, errors = _samples(kind, [stream_b])
    assert errors, "the noise was seen"
    step = max(1, len(stream_b) // 150)
    for cut in range(0, len(stream_b), step):
        r, d, _ = _samples(kind, [stream_b[:cut], stream_b[cut:]])
        assert r == runs, cut
        assert np.array_equal(d, data), cut
    for size in (packet - 1, packet + 1, 7 * packet + 3):
        r, d, _ = _samples(kind, [stream_b[i : i + size] for i in range(0, len(stream_b), size)])
        assert r == runs, size
        assert np.array_equal(d, data), size
