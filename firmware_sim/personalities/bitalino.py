"""BITalino (r)evolution personality: CRC-4 frames over Bluetooth serial (here: the pty).

The device as its serial API describes it: idle after power-on; in idle ``0x07`` answers the
version string, ``<rate>000011`` sets the rate, ``A6..A1 01`` starts live acquisition of the
inputs set (the sequence number restarts at 0); in live mode ``0x00`` stops; ``0xFF`` goes to
idle from any mode. The scenario's EMG channels are on A1.., quiet noise on the other EMG
inputs, the accelerometer's Z axis on A5 (6-bit), A6 reads 0.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from firmware_sim.personalities import HostReply, Packet, Personality, PersonalityDevice, register_personality
from ingest.wire.bitalino import ACC_CMAX_6BIT, ACC_CMIN_6BIT, EMG_GAIN, VCC, crc4, frame_size

_RATES = {0: 1, 1: 10, 2: 100, 3: 1000}
#: Frames per fault-injection unit (4 ms at 1 kHz): below the 4-bit sequence's 15-frame reach.
_BLOCK = 4
VERSION = b"BITalino_v5.2\n"


def encode_frames(seq: np.ndarray, analog: np.ndarray, digital: int = 0) -> np.ndarray:
    """(k,) sequence numbers and (k, 6) ADC codes -> (k, 8) frames with their CRC-4."""
    a = analog.astype(np.int64)
    k = len(seq)
    d = np.zeros((k, 8), dtype=np.int64)
    d[:, 7] = (seq & 0xF) << 4
    d[:, 6] = (digital & 0xF) << 4 | (a[:, 0] >> 6)
    d[:, 5] = (a[:, 0] & 0x3F) << 2 | (a[:, 1] >> 8)
    d[:, 4] = a[:, 1] & 0xFF
    d[:, 3] = a[:, 2] >> 2
    d[:, 2] = (a[:, 2] & 0x03) << 6 | (a[:, 3] >> 4)
    d[:, 1] = (a[:, 3] & 0x0F) << 4 | (a[:, 4] >> 2)
    d[:, 0] = (a[:, 4] & 0x03) << 6 | (a[:, 5] & 0x3F)
    out = d.astype(np.uint8)
    for i in range(k):
        out[i, 7] |= crc4(out[i].tobytes())
    return out


@register_personality
class BitalinoPersonality(Personality):
    kind: ClassVar[str] = "bitalino"

    def __init__(self, device: PersonalityDevice, **options: str) -> None:
        super().__init__(device, **options)
        self.rate_hz = 1000
        self.live = False
        self._apply()

    def _apply(self) -> None:
        self.configure(
            emg_rate_hz=self.rate_hz, acc_rate_hz=self.rate_hz, n_channels=4,
            emg_lsb_uv=VCC / EMG_GAIN / 1024 * 1e6, acc_lsb_g=2.0 / (ACC_CMAX_6BIT - ACC_CMIN_6BIT),
            block_samples=_BLOCK, emg_code_range=(-512, 511), acc_code_range=(0, 63),
            acc_offset=(ACC_CMIN_6BIT + ACC_CMAX_6BIT) / 2,
        )  # fmt: skip

    def on_reboot(self) -> None:
        self.rate_hz = 1000
        self.live = False
        self._apply()

    def on_host_bytes(self, data: bytes, char_uuid: str = "") -> HostReply:
        r = HostReply()
        for b in data:
            if b == 0xFF:
                self.live = False
                r.stop, r.start = True, False
            elif self.live:
                if b == 0x00:
                    self.live = False
                    r.stop, r.start = True, False
            elif b == 0x07:
                r.reply += VERSION
            elif b & 0x3F == 0x03:
                self.rate_hz = _RATES[b >> 6]
                self._apply()
            elif b & 0x03 == 0x01 and b >> 2:
                if bin(b >> 2).count("1") != 6:
                    continue  # the simulator sends all six inputs (the decoder asks for all six)
                self.live = True
                r.start, r.stop = True, False
        return r

    def packets(self, first: int, n: int) -> list[Packet]:
        emg = self.emg_counts(first, n) + 512
        a0, _ = self.acc_span(first, n)
        acc = self.acc_counts(a0, n)
        analog = np.zeros((n, 6), dtype=np.int64)
        analog[:, :4] = emg
        analog[:, 4] = acc[:, 2]
        seq = np.arange(first, first + n, dtype=np.int64) & 0xF
        frames = encode_frames(seq, analog)
        assert frames.shape[1] == frame_size(6)
        return [Packet(self.emg_frame(first, emg), "", frames.tobytes())]
