"""What detectors emit: plain, immutable records in device sample counters.

Detectors know nothing of clocks or devices: every position is a device sample counter (an
unwrapped int) in the domain it was measured in (``"emg"`` or ``"acc"``). The gateway turns
counters into UTC with its fitted clock model and gives each event its id, so the same detector
runs live, on a replay and offline on a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SpasmType = Literal["twitch", "phasic", "tonic", "clonus", "tremor"]
Domain = Literal["emg", "acc"]
QualityState = Literal["ok", "lead_off", "saturated"]

SPASM_TYPES: tuple[SpasmType, ...] = ("twitch", "phasic", "tonic", "clonus", "tremor")


@dataclass(frozen=True, slots=True)
class Onset:
    """Early notice that a contraction has started; its type is not known yet.

    ``key`` is the same string the completed ``SpasmEvent`` will carry, so a consumer can match the
    live alert to the final event (and the gateway derives both ids from it).
    """

    key: str
    channel: str
    domain: Domain
    onset_sample: int
    amplitude_uv: float
    baseline_uv: float


@dataclass(frozen=True, slots=True)
class SpasmEvent:
    """One completed spasm episode (a clonus or tremor episode is one event, not one per burst)."""

    key: str
    type: SpasmType
    channel: str
    domain: Domain
    onset_sample: int
    offset_sample: int  # exclusive: first sample back at rest
    rate_hz: float  # sample rate of ``domain``, so duration = (offset - onset) / rate_hz
    peak_uv: float
    mean_uv: float
    baseline_uv: float
    relative_amplitude: float  # peak envelope over the resting baseline
    frequency_hz: float | None
    confidence: float  # 0..1
    detector_version: str
    config_hash: str

    @property
    def duration_s(self) -> float:
        return (self.offset_sample - self.onset_sample) / self.rate_hz


@dataclass(frozen=True, slots=True)
class QualityChange:
    """Signal quality of one channel changed (lead-off, railed amplifier, recovered).

    Reported as status, never as a spasm: a patient whose electrode fell off is "not monitored",
    not "no spasms".
    """

    channel: str
    domain: Domain
    sample: int
    state: QualityState


DetectorOutput = Onset | SpasmEvent | QualityChange
