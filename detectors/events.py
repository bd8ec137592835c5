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

#: What the wearer was doing (issue 9). ``exercise`` is a declared session (``SpasmDetector.declare``).
ActivityKind = Literal[
    "rest", "posture_transition", "walking", "rhythmic_exercise", "other_voluntary", "exercise"
]
ACTIVITY_KINDS: tuple[ActivityKind, ...] = (
    "rest",
    "posture_transition",
    "walking",
    "rhythmic_exercise",
    "other_voluntary",
    "exercise",
)


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
    confidence: float  # 0..1; lower when the spasm happened during voluntary activity
    detector_version: str
    config_hash: str
    #: What the wearer was doing around it: ``rest`` or an activity kind (issue 9).
    context: ActivityKind = "rest"
    #: Onset to the first envelope sample at 80 % of the peak (s): graded voluntary force ramps
    #: over hundreds of ms, a reflex spasm rises in tens of ms. None for tremor.
    rise_s: float | None = None
    #: Some samples touched the ADC rails (a strong contraction on a low-range amplifier): still
    #: one event, but peak and mean are underestimated.
    clipped: bool = False
    #: It happened while the electrode was coming loose or settling after reattachment (within
    #: the lead-off guard windows) and its waveform looked like muscle: published, with lowered
    #: confidence, for a clinician to weigh (event schema v2, optional field).
    artifact_suspect: bool = False

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


@dataclass(frozen=True, slots=True)
class ActivityChange:
    """An activity period started (``kind`` != "rest") or ended (``kind`` == "rest") at ``sample``.

    For a live status ("walking since 10:02"); ``ActivitySpan`` is the record to store.
    """

    kind: ActivityKind
    domain: Domain
    sample: int
    declared: bool = False


@dataclass(frozen=True, slots=True)
class ActivitySpan:
    """A finished period of voluntary activity, ``start`` to ``end`` (exclusive) in ``domain``
    counters at ``rate_hz``, so the gateway can store "walked 40 min" beside the spasm counts.

    ``declared`` spans come from ``SpasmDetector.declare`` (a planned physiotherapy session).
    ``suppressed`` counts the EMG bursts inside it classed as voluntary (not published as spasms).
    """

    kind: ActivityKind
    domain: Domain
    start_sample: int
    end_sample: int
    rate_hz: float
    declared: bool = False
    suppressed: int = 0

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / self.rate_hz


DetectorOutput = Onset | SpasmEvent | QualityChange | ActivityChange | ActivitySpan
