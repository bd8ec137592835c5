"""``[[devices]]`` settings checked against the device kind: one line naming file and key."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ingest.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "gateway": {"site": "s", "patient": "p-0001", "state_dir": "/tmp/ns-kinds"},
    "mqtt": {"host": "h"},
}


def _parse(dev: dict[str, Any]) -> Any:
    return parse_config({**BASE, "devices": [{"id": "dev-a", **dev}]}, "gw.toml").devices[0]


def test_cyton_gets_its_baud_rate_by_default() -> None:
    assert _parse({"kind": "cyton", "port": "/dev/ttyUSB0"}).baudrate == 115200
    assert _parse({"kind": "shimmer", "port": "/dev/rfcomm0"}).baudrate == 115200
    assert _parse({"port": "/dev/ttyACM0"}).baudrate == 921600  # our own wearable: unchanged


@pytest.mark.parametrize(
    ("dev", "line"),
    [
        ({"kind": "cyton", "port": "/dev/ttyUSB0", "baudrate": 921600},
         "gw.toml: devices[0].baudrate: a 'cyton' device talks at 115200 baud, not 921600"),
        ({"kind": "cyton", "transport": "ble", "address": "C0:FF:EE:00:00:01"},
         "gw.toml: devices[0].transport: a 'cyton' device connects over serial"),
        ({"kind": "bitalino", "port": "/dev/rfcomm0", "name": "BITalino"},
         "gw.toml: devices[0].name: not a setting of a serial link"),
        ({"transport": "ble", "address": "C0:FF:EE:00:00:01", "port": "/dev/ttyACM0"},
         "gw.toml: devices[0].port: not a setting of a ble link"),
        ({"kind": "openbci", "port": "/dev/ttyUSB0"},
         "gw.toml: devices[0].kind: unknown device kind 'openbci'"),
    ],
)  # fmt: skip
def test_unsupported_settings_are_one_line(dev: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(dev)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(line)


# -- vendor settings (``options``) -------------------------------------------------------------


def _decoder(dev: dict[str, Any]) -> Any:
    """The decoder the gateway would build for this table (the runner's own decode loop)."""
    from ingest.stream.pipeline import DecodeLoop
    from ingest.stream.session import DeviceSession

    section = _parse(dev)
    return DecodeLoop(DeviceSession("dev-a", lambda _o: None), section.kind, options=section.options).decoder


def test_cyton_gain_and_daisy_reach_the_decoder_and_its_commands() -> None:
    from ingest.wire.cyton import GAIN_CODES, emg_scale_uv

    dec = _decoder({"kind": "cyton", "port": "/dev/ttyUSB0", "options": {"gain": 8, "daisy": True}})
    assert (dec.gain, dec.daisy) == (8, True)
    cmds = [c.data for c in dec.start_commands()]
    # x (CHANNEL) (POWER_DOWN) (GAIN_SET) (INPUT_TYPE) (BIAS) (SRB2) (SRB1) X: gain 8 is code 4
    assert GAIN_CODES[8] == 4 and b"x1040100X" in cmds
    xs = [c for c in cmds if c.startswith(b"x")]
    assert len(xs) == 16 and all(c[3:4] == b"4" for c in xs)
    assert emg_scale_uv(8) == pytest.approx(4.5 / 8 / (2**23 - 1) * 1e6)


def test_shimmer_rate_and_exg_gain_reach_the_device_and_are_read_back() -> None:
    """The Shimmer personality takes the written gain; the decoder scales by the read-back."""
    from firmware_sim.device import SignalSource
    from firmware_sim.personalities import PersonalityDevice, make_device
    from firmware_sim.scenario import builtin_scenario
    from firmware_sim.signals import synthesize
    from ingest.wire.protocol import EmgFrame, InfoFrame

    dec = _decoder({"kind": "shimmer", "port": "/dev/rfcomm0", "options": {"rate_hz": 512, "exg_gain": 4}})
    cmds = [c.data for c in dec.start_commands()]
    assert b"\x05\x40\x00" in cmds  # divider 64 = 32768 / 512
    assert b"\x61\x00\x03\x02\x49\x40" in cmds  # CH1SET, CH2SET: gain code 4 (4x), EMG input mux
    assert cmds.index(b"\x61\x00\x03\x02\x49\x40") < cmds.index(b"\x63\x00\x00\x0a")  # written, then read
    rec = synthesize(builtin_scenario("e2e_short"))
    dev = make_device("shimmer", SignalSource.from_recording(rec))
    assert isinstance(dev, PersonalityDevice)
    for c in cmds:
        dev.handle_bytes(c)
    assert dev.personality.gain == 4 and dev.personality.emg_rate_hz == 512  # type: ignore[attr-defined]
    frames = []
    for t in (0.1, 0.2, 0.3):
        for chunk in dev.frames_until(t):
            frames += dec.feed(chunk)
    info = next(f for f in frames if isinstance(f, InfoFrame))
    assert info.emg_rate_hz == 512
    emg = np.concatenate([f.samples for f in frames if isinstance(f, EmgFrame)])
    want = dev._emg_vendor[: len(emg), :2] * dev.personality.emg_lsb_uv
    assert np.allclose(emg, want, rtol=1e-9, atol=1e-9)
    assert dev.personality.emg_lsb_uv == pytest.approx(2.42 / (2**23 - 1) / 4 * 1e6)


def test_bitalino_polar_myo_settings_reach_their_commands() -> None:
    dec = _decoder({"kind": "bitalino", "port": "/dev/rfcomm0",
                    "options": {"rate_hz": 100, "emg_inputs": [1, 3], "acc_input": 6}})  # fmt: skip
    assert (dec.rate_hz, dec.emg_inputs, dec.acc_input) == (100, (0, 2), 5)
    assert bytes([2 << 6 | 0x03]) in [c.data for c in dec.start_commands()]  # rate code 2: 100 Hz
    no_acc = _decoder({"kind": "bitalino", "port": "/dev/rfcomm0", "options": {"acc_input": False}})
    assert no_acc.acc_input is None
    polar = _decoder({"kind": "polar-h10", "transport": "ble", "address": "C0:FF:EE:00:00:01",
                      "options": {"rate_hz": 50, "range_g": 2}})  # fmt: skip
    from ingest.wire.polar import start_acc_command

    assert [c.data for c in polar.start_commands()] == [start_acc_command(50, 2)]
    myo = _decoder({"kind": "myo", "transport": "ble", "address": "C0:FF:EE:00:00:02",
                    "options": {"emg_mode": "filtered"}})  # fmt: skip
    set_mode = [c.data for c in myo.start_commands()][-1]
    assert set_mode[:3] == bytes([0x01, 3, 0x02])  # myohw_command_set_mode, EMG mode 2: filtered


@pytest.mark.parametrize(
    ("dev", "line"),
    [
        ({"kind": "cyton", "port": "/dev/ttyUSB0", "options": {"rate_hz": 500}},
         "options.rate_hz: not a setting of a 'cyton' device (its settings: daisy, gain)"),
        ({"port": "/dev/ttyACM0", "options": {"gain": 24}},
         "options.gain: not a setting of a 'neurospasm' device (its settings: none)"),
        ({"kind": "cyton", "port": "/dev/ttyUSB0", "options": {"gain": 3}},
         "options.gain: a 'cyton' gain must be one of 1, 2, 4, 6, 8, 12, 24, not 3"),
        ({"kind": "cyton", "port": "/dev/ttyUSB0", "options": {"daisy": "yes"}},
         "options.daisy: a 'cyton' daisy must be true or false, not 'yes'"),
        ({"kind": "shimmer", "port": "/dev/rfcomm0", "options": {"rate_hz": 1000}},
         "options.rate_hz: a 'shimmer' rate_hz must be one of 128, 256, 512, 1024, 2048 Hz"),
        ({"kind": "bitalino", "port": "/dev/rfcomm0", "options": {"emg_inputs": [1, 5]}},
         "options.emg_inputs: a 'bitalino' emg_inputs input must be 1..4 (A1..A4), not 5"),
        ({"kind": "bitalino", "port": "/dev/rfcomm0", "options": {"acc_input": 2}},
         "options.acc_input: a 'bitalino' acc_input input must be 5..6 (A5..A6), not 2"),
        ({"kind": "polar-h10", "transport": "ble", "address": "C0:FF:EE:0:0:1", "options": {"range_g": 16}},
         "options.range_g: a 'polar-h10' range_g must be one of 2, 4, 8 g, not 16"),
        ({"kind": "myo", "transport": "ble", "address": "C0:FF:EE:0:0:1", "options": {"emg_mode": "fast"}},
         "options.emg_mode: a 'myo' emg_mode must be one of raw, filtered, not 'fast'"),
    ],
)  # fmt: skip
def test_unsupported_or_bad_vendor_settings_are_one_line(dev: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(dev)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("gw.toml: devices[0]." + line), msg


def test_every_vendor_setting_is_documented() -> None:
    """Each kind's settings appear in the example configuration and in docs/devices.md."""
    import re
    from pathlib import Path

    from ingest.wire.kinds import device_kinds, options_of

    root = Path(__file__).resolve().parents[2]
    example = (root / "deploy" / "gateway.example.toml").read_text()
    devices_md = (root / "docs" / "devices.md").read_text()
    assert re.search(r"^#? ?options =", example, flags=re.M)
    for kind in device_kinds():
        for key in options_of(kind):
            assert re.search(rf"^#.*\b{kind}\b.*\b{key}\b", example, flags=re.M), (kind, key, "example")
            assert re.search(rf"`{key}`", devices_md), (kind, key, "docs/devices.md")
