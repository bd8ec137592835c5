"""OpenBCI Cyton personality: 33-byte packets over the dongle's 115200-baud serial port.

What the board does, from OpenBCI's Cyton Data Format and SDK documents: idle after power-on;
``v`` soft-resets and prints the banner ending in ``$$$`` (with a Daisy line when one is fitted);
``x...X`` sets one channel and answers ``Success: ...$$$``; ``b`` starts streaming (the ADS1299
restarts, so the sample number restarts at 0), ``s`` stops. The accelerometer runs at 25 Hz: one
packet in ten carries it (footer 0xC0), the others carry zeros. With a Daisy (option ``daisy=1``)
the board's channels go on odd sample numbers, the Daisy's on the next even one, 125 Hz each.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from firmware_sim.personalities import HostReply, Packet, Personality, PersonalityDevice, register_personality
from ingest.wire.cyton import ACC_SCALE_G, CHANNEL_KEYS, DEFAULT_GAIN, GAIN_CODES, emg_scale_uv

_GAIN_OF_CODE = {code: gain for gain, code in GAIN_CODES.items()}
#: Packets per fault-injection unit: 5 packets = 20 ms at 250 Hz (one radio burst).
_BLOCK = 5


def _banner(daisy: bool) -> bytes:
    lines = ["OpenBCI V3 8-16 channel", "On Board ADS1299 Device ID: 0x3E"]
    if daisy:
        lines.append("On Daisy ADS1299 Device ID: 0x3E")
    lines += ["LIS3DH Device ID: 0x33", "Firmware: v3.1.2", "$$$"]
    return ("\n".join(lines)).encode("ascii")


def _int24_bytes(codes: np.ndarray) -> np.ndarray:
    """(n, k) ints -> (n, 3k) uint8, 24-bit two's complement, MSB first."""
    v = codes.astype(np.int64) & 0xFFFFFF
    out = np.stack([(v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF], axis=-1)
    return out.reshape(codes.shape[0], -1).astype(np.uint8)


@register_personality
class CytonPersonality(Personality):
    kind: ClassVar[str] = "cyton"
    options_help: ClassVar[dict[str, str]] = {"daisy": "1: a Daisy module is fitted (16 channels at 125 Hz)"}

    def __init__(self, device: PersonalityDevice, **options: str) -> None:
        super().__init__(device, **options)
        self.daisy = options.get("daisy", "0") not in ("0", "", "false", "no")
        self.gains = [DEFAULT_GAIN] * 16
        self._cmd = bytearray()
        self._apply()

    def _apply(self) -> None:
        n = 16 if self.daisy else 8
        self.configure(
            emg_rate_hz=125 if self.daisy else 250, acc_rate_hz=25, n_channels=n,
            emg_lsb_uv=emg_scale_uv(self.gains[0]), acc_lsb_g=ACC_SCALE_G, block_samples=_BLOCK,
            emg_code_range=(-(1 << 23), (1 << 23) - 1), acc_code_range=(-32768, 32767),
        )  # fmt: skip

    def on_reboot(self) -> None:
        self.gains = [DEFAULT_GAIN] * 16
        self._cmd.clear()
        self._apply()

    # -- host commands ---------------------------------------------------------------------
    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        r = HostReply()
        for byte in data:
            ch = chr(byte)
            if self._cmd:  # inside x...X
                self._cmd.append(byte)
                if len(self._cmd) == 9:
                    r.reply += self._channel_command(bytes(self._cmd))
                    self._cmd.clear()
                continue
            if ch == "x":
                self._cmd.append(byte)
            elif ch == "b":
                r.start, r.stop = True, False
            elif ch == "s":
                r.stop, r.start = True, False
            elif ch == "v":
                self.gains = [DEFAULT_GAIN] * 16
                self._apply()
                r.stop, r.start = True, False
                r.reply += _banner(self.daisy)
            elif ch == "d":
                self.gains = [DEFAULT_GAIN] * 16
                self._apply()
                r.reply += b"updating channel settings to default$$$"
        return r

    def _channel_command(self, cmd: bytes) -> bytes:
        text = cmd.decode("ascii", "replace")
        key, gain_code = text[1], text[3]
        n = 16 if self.daisy else 8
        if text[-1] != "X" or key not in CHANNEL_KEYS[:n] or not gain_code.isdigit():
            return b"Failure: too few chars$$$"
        gain = _GAIN_OF_CODE.get(int(gain_code))
        if gain is None:
            return b"Failure: too few chars$$$"
        self.gains[CHANNEL_KEYS.index(key)] = gain
        if gain != self.gains[0] or len(set(self.gains[:n])) > 1:
            return b"Failure: the simulator keeps one gain for all channels$$$"
        self._apply()
        return f"Success: Channel set for {CHANNEL_KEYS.index(key) + 1}$$$".encode("ascii")

    # -- data --------------------------------------------------------------------------------
    def packets(self, first: int, n: int) -> list[Packet]:
        emg = self.emg_counts(first, n)
        a0, a1 = self.acc_span(first, n)
        acc = self.acc_counts(a0, a1 - a0)
        per_acc = round(self.emg_rate_hz / self.acc_rate_hz)
        halves = 2 if self.daisy else 1
        rows = np.zeros((n * halves, 33), dtype=np.uint8)
        rows[:, 0] = 0xA0
        rows[:, 32] = 0xC0
        for i in range(n):
            k = first + i
            for h in range(halves):
                r = rows[i * halves + h]
                r[1] = (2 * k + 1 + h) & 0xFF if self.daisy else k & 0xFF
                r[2:26] = _int24_bytes(emg[i : i + 1, 8 * h : 8 * h + 8])[0]
            sig = self.signal_index(k)
            j = sig // per_acc
            if sig % per_acc == 0 and a0 <= j < a1:
                v = acc[j - a0].astype(np.int64) & 0xFFFF
                rows[i * halves, 26:32] = np.stack([(v >> 8) & 0xFF, v & 0xFF], axis=-1).reshape(-1)
        return [Packet(self.emg_frame(first, emg), "", rows.tobytes())]
