"""What stream shapes the detector can handle: the one place the limits live.

The decoder side (``ingest.stream.session``, before it builds a detector for a device's INFO frame)
and the detector itself (``SpasmDetector.__init__``) both call ``stream_problem``, so a device the
detector would refuse is refused cleanly at the seam, with a reason a person can read, instead of
an exception deep in a device task. docs/protocol.md states the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ACC_RATE_MAX_HZ", "ACC_RATE_MIN_HZ", "EMG_RATE_MAX_HZ", "EMG_RATE_MIN_HZ", "stream_problem"]

#: Surface EMG needs its 20-450 Hz band: below 100 Hz sampling, nothing of it is left.
EMG_RATE_MIN_HZ = 100.0
#: Beyond this the filters are pointless and a rate is far more likely a corrupt INFO frame.
EMG_RATE_MAX_HZ = 100_000.0
#: Tremor (3-12 Hz) needs at least 10 Hz accelerometer sampling ...
ACC_RATE_MIN_HZ = 10.0
#: ... and no wearable accelerometer samples faster than a few kHz.
ACC_RATE_MAX_HZ = 10_000.0


def stream_problem(
    emg_rate_hz: float, channel_labels: Sequence[str], acc_rate_hz: float | None = None
) -> str | None:
    """Why the detector cannot run on this stream (one short line), or None if it can.

    ``acc_rate_hz`` None or 0 means "no accelerometer". A stream with no EMG channels but an
    accelerometer (a Polar H10) is an accelerometer-only device: only the tremor path runs, and its
    EMG rate is ignored.
    """
    acc_only = not channel_labels and bool(acc_rate_hz)
    if acc_only:
        if not ACC_RATE_MIN_HZ <= float(acc_rate_hz or 0) <= ACC_RATE_MAX_HZ:
            return (
                f"unsupported accelerometer rate {acc_rate_hz:g} Hz "
                f"(supported {ACC_RATE_MIN_HZ:g}..{ACC_RATE_MAX_HZ:g} Hz)"
            )
        return None
    if not EMG_RATE_MIN_HZ <= emg_rate_hz <= EMG_RATE_MAX_HZ:
        return (
            f"unsupported EMG rate {emg_rate_hz:g} Hz (supported {EMG_RATE_MIN_HZ:g}..{EMG_RATE_MAX_HZ:g} Hz)"
        )
    if acc_rate_hz and not ACC_RATE_MIN_HZ <= acc_rate_hz <= ACC_RATE_MAX_HZ:
        return (
            f"unsupported accelerometer rate {acc_rate_hz:g} Hz "
            f"(supported {ACC_RATE_MIN_HZ:g}..{ACC_RATE_MAX_HZ:g} Hz)"
        )
    if not channel_labels:
        return "no EMG channels and no accelerometer: at least one EMG channel is needed"
    if any(not str(label).strip() for label in channel_labels):
        return f"empty EMG channel label in {list(channel_labels)}"
    if len(set(channel_labels)) != len(channel_labels):
        dup = sorted({x for x in channel_labels if list(channel_labels).count(x) > 1})
        return f"duplicate EMG channel labels {dup}"
    return None
