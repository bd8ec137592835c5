"""The simulator-personality plumbing, with a toy vendor protocol defined here.

The toy protocol is deliberately trivial (a 0x55 byte, a u8 counter, one int16 per channel, a
0xAA byte; commands "S" start, "X" stop, "?" answered with "TOY"), so what is tested is the
plumbing: resampling to the vendor rate, counters, faults acting on vendor packets with the
injector's truth in the vendor's sample counter, command replies, and the BLE GATT table.
Each vendor personality has its own tests beside its decoder's.
"""

from __future__ import annotations

import asyncio
import struct
from typing import ClassVar, Literal

import numpy as np
import pytest
from bleak import BleakClient, BleakScanner

from firmware_sim.ble import SimBleakClient, SimBleakScanner, VirtualBle, VirtualPeripheral
from firmware_sim.device import SignalSource
from firmware_sim.faults import FaultInjector, simulate
from firmware_sim.personalities import (
    PERSONALITIES,
    GattCharacteristic,
    GattService,
    HostReply,
    Packet,
    Personality,
    PersonalityDevice,
    UnknownPersonality,
    make_device,
    personality_kinds,
    register_personality,
)
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize

TOY_SVC = "0000feed-0000-1000-8000-00805f9b34fb"
TOY_DATA = "0000fee1-0000-1000-8000-00805f9b34fb"
TOY_CMD = "0000fee2-0000-1000-8000-00805f9b34fb"


class _Toy(Personality):
    kind: ClassVar[str] = "toy-serial"
    options_help: ClassVar[dict[str, str]] = {"rate": "sampling rate in Hz"}

    def __init__(self, device: PersonalityDevice, **options: str) -> None:
        super().__init__(device, **options)
        self.configure(emg_rate_hz=float(options.get("rate", 250)), acc_rate_hz=25, n_channels=3,
                       emg_lsb_uv=0.5, acc_lsb_g=0.001, block_samples=5,
                       emg_code_range=(-32768, 32767))  # fmt: skip

    def packets(self, first: int, n: int) -> list[Packet]:
        codes = self.emg_counts(first, n)
        data = b"".join(
            bytes([0x55, (first + i) & 0xFF]) + struct.pack("<3h", *codes[i]) + b"\xaa" for i in range(n)
        )
        return [Packet(self.emg_frame(first, codes), "", data)]

    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        r = HostReply()
        for b in data:
            if b == ord("S"):
                r.start = True
            elif b == ord("X"):
                r.stop = True
            elif b == ord("?"):
                r.reply += b"TOY"
        return r


class _ToyBle(_Toy):
    kind: ClassVar[str] = "toy-ble"
    link: ClassVar[Literal["serial", "ble"]] = "ble"
    advertised_name: ClassVar[str] = "TOY-1"
    gatt: ClassVar[tuple[GattService, ...]] = (
        GattService(TOY_SVC, (
            GattCharacteristic(TOY_DATA, ("notify",)),
            GattCharacteristic(TOY_CMD, ("write",)),
            GattCharacteristic("0000fee3-0000-1000-8000-00805f9b34fb", ("read",), b"v1.0"),
        )),
    )  # fmt: skip

    def packets(self, first: int, n: int) -> list[Packet]:
        return [Packet(p.frame, TOY_DATA, p.data) for p in super().packets(first, n)]

    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        r = super().on_host_bytes(data, char_uuid)
        r.reply_char_uuid = TOY_DATA
        return r


register_personality(_Toy)
register_personality(_ToyBle)


def _parse(stream: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Counters and codes of the toy packets in a byte stream (test-side reader)."""
    n = len(stream) // 9
    raw = np.frombuffer(stream[: n * 9], dtype=np.uint8).reshape(n, 9)
    assert (raw[:, 0] == 0x55).all() and (raw[:, 8] == 0xAA).all()
    codes = raw[:, 2:8].copy().view("<i2").reshape(n, 3)
    return raw[:, 1].astype(int), codes


@pytest.fixture(scope="module")
def source() -> SignalSource:
    return SignalSource.from_recording(synthesize(builtin_scenario("e2e_short")))


def test_registry_lists_kinds_and_refuses_unknown(source: SignalSource) -> None:
    assert "toy-serial" in personality_kinds() and personality_kinds()[0] == "neurospasm"
    with pytest.raises(UnknownPersonality, match="unknown kind 'nope'"):
        make_device("nope", source)
    with pytest.raises(UnknownPersonality, match="unknown option"):
        make_device("toy-serial", source, options={"colour": "red"})
    assert PERSONALITIES["toy-serial"] is _Toy


def test_resampled_counts_follow_the_recording(source: SignalSource) -> None:
    dev = make_device("toy-serial", source, options={"rate": "500"})
    assert isinstance(dev, PersonalityDevice)
    dev.handle_bytes(b"S?")
    out = b"".join(dev.frames_until(2.0))
    assert out.startswith(b"TOY")  # the reply comes first, outside the data
    counters, codes = _parse(out[3:])
    assert len(counters) == 1000  # 2 s at 500 Hz, whole blocks of 5
    assert list(counters[:300]) == [i & 0xFF for i in range(300)]
    # The recording at 1 kHz, decimated to 500 Hz: same waveform at half the samples (filter aside).
    ref = np.asarray(source.emg_uv)[::2][:1000, :2] / 0.5
    got = codes[:, :2].astype(float)
    corr = np.corrcoef(ref[100:900, 0], got[100:900, 0])[0, 1]
    assert corr > 0.9
    spare_uv = codes[:, 2] * 0.5  # a spare input is a quiet muscle: a few uV of noise, not flat
    assert 1.0 < float(np.std(spare_uv)) < 4.0 and not np.array_equal(codes[:, 2], codes[:, 0])
    dev.handle_bytes(b"X")
    assert dev.frames_until(3.0) == []


def test_faults_act_on_vendor_packets_with_truth_in_vendor_counter(source: SignalSource) -> None:
    scenario = builtin_scenario("e2e_short")
    scenario = scenario.model_copy(
        update={"faults": scenario.faults.model_copy(update={"frame_loss_rate": 0.05, "seed": 3})}
    )
    dev = make_device("toy-serial", source)
    assert isinstance(dev, PersonalityDevice)
    inj = FaultInjector.from_scenario(scenario, None, emg_rate_hz=250, acc_rate_hz=25)
    dev.frame_filter = inj
    dev.handle_bytes(b"S")  # simulate() sends our START too; the toy ignores bytes it does not know
    cap = simulate(dev, inj, duration_s=6.0)
    counters, _ = _parse(b"".join(c for _, c in cap.chunks))
    lost = [r for r in inj.truth if r["kind"] == "lost_frames"]
    assert lost, "5 % loss over 300 packets lost nothing"
    assert len(counters) == 1500 - 5 * len(lost)
    gaps = inj.expected_gaps()
    # Every expected gap is a hole in the received counters, of exactly the size the truth says.
    full = np.unwrap(counters, period=256).astype(int)
    holes = {int(full[i]) + 1: int(full[i + 1] - full[i] - 1) for i in np.nonzero(np.diff(full) > 1)[0]}
    assert holes == {g["start_counter"]: g["samples_missing"] for g in gaps}


async def test_ble_personality_exposes_its_gatt_table(source: SignalSource) -> None:
    dev = make_device("toy-ble", source)
    got: list[bytes] = []
    async with VirtualBle() as ble:
        p = ble.add(VirtualPeripheral(dev, address="C0:FF:EE:00:00:42", speed=4.0))
        assert p.name == "TOY-1"
        found = await BleakScanner.find_device_by_filter(
            lambda d, adv: TOY_SVC in adv.service_uuids, timeout=2.0, backend=SimBleakScanner
        )
        assert found is not None and found.name == "TOY-1"
        async with BleakClient(found, backend=SimBleakClient) as client:
            chars = {c.uuid: c for s in client.services for c in s.characteristics}
            assert set(chars) == {TOY_DATA, TOY_CMD, "0000fee3-0000-1000-8000-00805f9b34fb"}
            assert bytes(await client.read_gatt_char("0000fee3-0000-1000-8000-00805f9b34fb")) == b"v1.0"
            await client.start_notify(TOY_DATA, lambda _c, data: got.append(bytes(data)))
            await client.write_gatt_char(TOY_CMD, b"?S", response=True)
            await asyncio.sleep(0.3)
            with pytest.raises(Exception, match="not writable"):
                await client.write_gatt_char(TOY_DATA, b"S", response=True)
    assert got[0] == b"TOY"
    counters, _ = _parse(b"".join(got[1:]))
    assert len(counters) >= 100 and list(counters[:10]) == list(range(10))


@pytest.mark.parametrize(
    ("kind", "options"), [("cyton", {}), ("cyton", {"daisy": "1"}), ("shimmer", {}), ("bitalino", {})]
)
def test_vendor_personality_through_its_decoder(
    source: SignalSource, kind: str, options: dict[str, str]
) -> None:
    """Each vendor personality, read by its decoder with every 7th packet group lost: the counter
    holes are exactly the lost samples and the microvolts are the recording's (resampled)."""
    from ingest.wire.kinds import decoder_for
    from ingest.wire.protocol import EmgFrame, InfoFrame

    dev = make_device(kind, source, options=options)
    assert isinstance(dev, PersonalityDevice)
    groups = {"n": 0}

    def lose_every_7th(frame: object, wire: bytes) -> list[bytes]:
        groups["n"] += 1
        return [] if groups["n"] % 7 == 0 else [wire]

    dec = decoder_for(kind)
    for cmd in dec.start_commands():
        dev.handle_bytes(cmd.data)
    dev.frame_filter = lose_every_7th
    frames = []
    for t in np.arange(0.0, 3.0, 0.01):
        for chunk in dev.frames_until(float(t)):
            frames += dec.feed(chunk)
    info = next(f for f in frames if isinstance(f, InfoFrame))
    p = dev.personality
    assert info.emg_rate_hz == round(p.emg_rate_hz) and info.n_channels == p.n_channels
    emg = [f for f in frames if isinstance(f, EmgFrame)]
    counters = np.concatenate([f.counter + np.arange(len(f.samples)) for f in emg])
    got = set(counters.tolist())
    block = p.block_samples
    lost = {k for g in range(groups["n"]) if (g + 1) % 7 == 0 for k in range(g * block, (g + 1) * block)}
    assert got.isdisjoint(lost) and got | lost >= set(range(int(counters.max()) + 1))
    uv = np.concatenate([np.asarray(f.samples, dtype=float) for f in emg]) * info.emg_scale_uv
    want = dev._emg_vendor[counters, :2] * p.emg_lsb_uv  # the personality's own quantised signal
    assert np.allclose(uv[:, :2], want, atol=p.emg_lsb_uv * 1.01)
    assert dec.stats.errors == {} or set(dec.stats.errors) <= {"calibration"}
