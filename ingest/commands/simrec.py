"""``neurospasm sim --recording FILE``: a recorded stream served as a live simulated device.

Why here: the simulator (``firmware_sim``) may import nothing of the gateway beyond the wire
protocol, while the file readers (EDF+/BDF+/CSV in ``ingest.files.readers``, captures in
``ingest.files.recording``) belong to the gateway. The command layer is the one place that may use
both, so it reads the file into plain arrays here and hands the simulator a ``Recording`` (the
same type a synthesized scenario is), which ``firmware_sim.cli.serve_serial`` then serves in any
personality (``--device``), at any ``--speed``, with the fault options, exactly as a scenario.

What becomes of each file kind:

- EDF+/BDF+, CSV, BioSPPy text: EMG in uV and accelerometer in g as the reader returns them;
  EDF+ annotations become the labels (``--labels``) with the annotation text as their type.
- a capture (``.nsc``): decoded the gateway's way; each boot's EMG/ACC blocks are placed by their
  counters (samples the capture never received are zeros, as a silent input) and successive boots
  are played back to back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from firmware_sim.signals import Recording
from ingest.commands.record import decode_source
from ingest.files.readers import RecordingError, read_recording
from ingest.files.recording import CaptureError, is_capture

__all__ = ["SimRecordingError", "load_recording"]


class SimRecordingError(ValueError):
    """The file cannot be served; the message names the file and what is wrong."""


def _rate(value: float, what: str, path: Path) -> int:
    r = round(value)
    if r <= 0 or abs(value - r) > 1e-6 * max(1.0, value):
        raise SimRecordingError(
            f"{path}: {what} rate {value:g} Hz is not a whole number of Hz (a device clocks at one)"
        )
    return r


def _full_scale(x: np.ndarray, floor: float) -> float:
    """ADC full scale for the simulated device: the recording's own peak (rails) plus headroom."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return max(floor, 1.05 * peak)


def _from_capture(path: Path) -> tuple[np.ndarray, np.ndarray, int, int, list[str]]:
    decoded = decode_source(str(path))
    boots = [b for b in decoded.boots if b.emg]
    if not boots:
        raise SimRecordingError(f"{path}: the capture holds no EMG samples")
    first = boots[0].info
    emg_parts, acc_parts = [], []
    for b in boots:
        info = b.info
        if (info.emg_rate_hz, info.acc_rate_hz, info.channel_labels) != (
            first.emg_rate_hz, first.acc_rate_hz, first.channel_labels,
        ):  # fmt: skip
            raise SimRecordingError(
                f"{path}: boot {info.boot_id:08x} changes rates or channels; "
                "serve one configuration at a time"
            )
        emg_parts.append(_place(b.emg, info.n_channels) * info.emg_scale_uv)
        if info.acc_rate_hz:
            acc_parts.append(_place(b.acc, 3) * info.acc_scale_g)
    emg = np.concatenate(emg_parts)
    acc = np.concatenate(acc_parts) if acc_parts else np.zeros((0, 3))
    return emg, acc, first.emg_rate_hz, first.acc_rate_hz, list(first.channel_labels)


def _place(blocks: dict[int, np.ndarray], width: int) -> np.ndarray:
    if not blocks:
        return np.zeros((0, width))
    c0 = min(blocks)
    end = max(c + len(v) for c, v in blocks.items())
    out = np.zeros((end - c0, width))
    for c, v in blocks.items():
        out[c - c0 : c - c0 + len(v)] = v
    return out


def load_recording(path: str | Path) -> Recording:
    """Read any replayable file into a ``Recording`` the simulator can serve."""
    p = Path(path)
    if not p.exists():
        raise SimRecordingError(f"{p}: no such file")
    labels: list[dict[str, Any]] = []
    try:
        if is_capture(p):
            emg, acc, emg_rate, acc_rate, channels = _from_capture(p)
        else:
            sf = read_recording(p)
            emg = np.asarray(sf.emg_uv, dtype=np.float64)
            emg_rate = _rate(sf.emg_rate_hz, "EMG", p)
            if sf.acc_g is not None and sf.acc_rate_hz:
                acc, acc_rate = (
                    np.asarray(sf.acc_g, dtype=np.float64),
                    _rate(sf.acc_rate_hz, "accelerometer", p),
                )
            else:
                acc, acc_rate = np.zeros((0, 3)), 0
            channels = [label[:16] for label in sf.channel_labels]
            for onset, duration, text in sf.annotations:
                labels.append({"type": text, "channel": "", "onset_s": float(onset),
                               "offset_s": float(onset + duration), "source": "annotation"})  # fmt: skip
    except (RecordingError, CaptureError) as exc:
        raise SimRecordingError(str(exc)) from None
    except (ValueError, OSError) as exc:  # what a reader let through (e.g. numpy on a text cell)
        raise SimRecordingError(f"{p}: {exc}") from None
    if not len(emg):
        raise SimRecordingError(f"{p}: no EMG samples to serve")
    if len(set(channels)) != len(channels):
        raise SimRecordingError(f"{p}: channel labels {channels} are not unique in their first 16 characters")
    return Recording(
        emg_uv=emg.astype(np.float32),
        acc_g=acc.astype(np.float32),
        emg_rate_hz=emg_rate,
        acc_rate_hz=acc_rate,
        channel_labels=channels,
        labels=labels,
        scenario_name=p.name[:64],
        seed=0,
        emg_full_scale_uv=_full_scale(emg, 100.0),
        acc_full_scale_g=_full_scale(acc, 8.0),
    )
