"""Declarative, seeded scenarios for the simulated wearable (TOML files validated with pydantic).

A scenario says *what* the wearer's muscles and the electrodes do (scripted spasm events,
confounders, a patient profile that adds stochastic events) and *how the device misbehaves*
(``faults``). ``firmware_sim.signals.synthesize`` turns it into arrays and ground-truth labels;
``firmware_sim.device`` frames those arrays and applies the faults at the frame level.

Why TOML and pydantic: scenarios are written by hand by developers and testers, so a typo must
fail loudly and point at the culprit. Every error from :func:`load_scenario` names the file and
the key path, e.g. ``scenarios/x.toml: events[2].type: Input should be 'twitch', 'phasic', ...``;
unknown keys are rejected rather than silently ignored.

All times are seconds from the start of the recording; amplitudes are microvolts of the RMS
envelope (see docs/simulator.md for the exact meaning of each field).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from detectors.configfile import ConfigError, format_errors, load_toml
from ingest.wire.protocol import MAX_LABEL_BYTES

__all__ = [
    "ACTIVITY_KINDS",
    "CONFOUNDER_KINDS",
    "EVENT_TYPES",
    "ActivitySpec",
    "ConfounderSpec",
    "EventSpec",
    "FaultSpec",
    "Interval",
    "ProfileSpec",
    "Scenario",
    "ScenarioError",
    "builtin_scenario",
    "builtin_scenario_names",
    "load_scenario",
]

EventType = Literal["twitch", "phasic", "tonic", "clonus", "tremor"]
#: The values of the Literal types, for validation messages (one spelling, in the Literal).
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

ConfounderKind = Literal[
    "ecg",
    "cable_motion",
    "electrode_pop",
    "mains",
    "baseline_wander",
    "lead_off",
    "saturation",
    "posture",
    "voluntary",
]
CONFOUNDER_KINDS: tuple[str, ...] = get_args(ConfounderKind)
#: Confounders that live on the accelerometer only (their ``channel`` is "ACC").
ACC_ONLY_KINDS = frozenset({"posture"})

ProfileKind = Literal["none", "sci", "parkinson", "healthy"]

ActivityKind = Literal[
    "walk",
    "sit_to_stand",
    "stand_to_sit",
    "reach",
    "lift",
    "cycling",
    "exercise",
    "wheelchair",
    "transfer",
]
ACTIVITY_KINDS: tuple[str, ...] = get_args(ActivityKind)
#: Default duration (s) and cycle frequency (Hz: stride, pedal, push or repetition rate) per kind.
ACTIVITY_DEFAULTS: dict[str, tuple[float, float | None]] = {
    "walk": (40.0, 0.95),
    "sit_to_stand": (2.5, None),
    "stand_to_sit": (3.0, None),
    "reach": (1.6, None),
    "lift": (4.0, None),
    "cycling": (60.0, 1.0),
    "exercise": (40.0, 0.3),
    "wheelchair": (40.0, 0.9),
    "transfer": (5.0, None),
}

#: Objective duration limits of the detector's taxonomy (issue 4), in seconds.
TWITCH_S = (0.05, 0.5)
PHASIC_S = (0.5, 10.0)
TONIC_MIN_S = 10.0
CLONUS_HZ = (3.0, 8.0)
CLONUS_MIN_CYCLES = 4
TREMOR_HZ = (3.0, 12.0)
TREMOR_MIN_S = 3.0

Posture = Literal["supine", "prone", "left_side", "right_side", "sitting", "standing"]


class ScenarioError(ConfigError):
    """A scenario file is unreadable or invalid. The message names the file and the key at fault.
    A ``ConfigError``, the one kind of configuration mistake, so every caller handles it alike."""


class _Model(BaseModel):
    # Frozen so a Scenario can be shared between the synthesizer and the device without copies;
    # extra="forbid" so a misspelt key is an error, not a silently ignored knob.
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventSpec(_Model):
    """One scripted spasm: the ground truth the detector must find.

    ``peak_uv`` is the peak of the RMS envelope (for tremor: of the weak EMG that comes with it;
    the movement itself is ``acc_g``). ``duration_s`` is onset to offset of the activity;
    for clonus it may be left out and given as ``cycles`` instead.
    """

    type: EventType
    channel: str = Field(description='EMG channel label; for tremor "ACC" or the EMG channel of the weak EMG')
    onset_s: float = Field(ge=0)
    duration_s: float | None = Field(default=None, gt=0)
    peak_uv: float = Field(default=150.0, gt=0, le=5000)
    frequency_hz: float | None = Field(default=None, gt=0)
    cycles: int | None = Field(default=None, ge=1)
    acc_g: float = Field(
        default=0.15, ge=0, le=4, description="tremor amplitude / spasm jerk on the accelerometer"
    )

    @field_validator("frequency_hz")
    @classmethod
    def _frequency_in_band(cls, v: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("type")
        if kind == "clonus":
            if v is None:
                return 5.5
            if not CLONUS_HZ[0] <= v <= CLONUS_HZ[1]:
                raise ValueError(f"clonus frequency must be within {CLONUS_HZ[0]}-{CLONUS_HZ[1]} Hz, got {v}")
        elif kind == "tremor":
            if v is None:
                return 5.0
            if not TREMOR_HZ[0] <= v <= TREMOR_HZ[1]:
                raise ValueError(f"tremor frequency must be within {TREMOR_HZ[0]}-{TREMOR_HZ[1]} Hz, got {v}")
        elif v is not None:
            raise ValueError(f"only clonus and tremor events have a frequency, not {kind}")
        return v

    @field_validator("cycles")
    @classmethod
    def _cycles_only_clonus(cls, v: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if v is not None and kind != "clonus":
            raise ValueError(f"only clonus events have cycles, not {kind}")
        if v is not None and v < CLONUS_MIN_CYCLES:
            raise ValueError(f"clonus needs at least {CLONUS_MIN_CYCLES} cycles, got {v}")
        return v

    @model_validator(mode="after")
    def _duration_matches_type(self) -> EventSpec:
        d = self.duration_s
        t = self.type
        if t == "clonus":
            f = self.frequency_hz or 5.5
            if d is None and self.cycles is None:
                raise ValueError("duration_s: clonus needs duration_s or cycles")
            if d is not None and self.cycles is not None:
                raise ValueError("duration_s: give clonus duration_s or cycles, not both")
            if d is not None and d * f < CLONUS_MIN_CYCLES:
                raise ValueError(
                    f"duration_s: clonus at {f} Hz needs >= {CLONUS_MIN_CYCLES / f:.2f} s "
                    f"({CLONUS_MIN_CYCLES} cycles), got {d}"
                )
            return self
        if d is None:
            raise ValueError(f"duration_s: required for a {t} event")
        if t == "twitch" and not TWITCH_S[0] <= d <= TWITCH_S[1]:
            raise ValueError(f"duration_s: a twitch lasts {TWITCH_S[0]}-{TWITCH_S[1]} s, got {d}")
        if t == "phasic" and not PHASIC_S[0] <= d <= PHASIC_S[1]:
            raise ValueError(f"duration_s: a phasic spasm lasts {PHASIC_S[0]}-{PHASIC_S[1]} s, got {d}")
        if t == "tonic" and d <= TONIC_MIN_S:
            raise ValueError(f"duration_s: a tonic spasm lasts more than {TONIC_MIN_S} s, got {d}")
        if t == "tremor" and d < TREMOR_MIN_S:
            raise ValueError(f"duration_s: a tremor episode lasts at least {TREMOR_MIN_S} s, got {d}")
        return self

    @property
    def effective_duration_s(self) -> float:
        """Onset to offset, also for a clonus given in cycles (the last burst ends the episode)."""
        if self.duration_s is not None:
            return self.duration_s
        assert self.cycles is not None and self.frequency_hz is not None
        return self.cycles / self.frequency_hz


class ConfounderSpec(_Model):
    """Something that is *not* a spasm and that the detector must not report as one.

    ``onset_s`` / ``duration_s`` left out means "the whole recording" (typical for mains, ECG and
    baseline wander). ``amplitude_uv`` is the kind's characteristic size (peak for pops and
    cable motion, sinusoid amplitude for mains, R-wave height for ECG); ``frequency_hz`` is the
    mains frequency (50 or 60), the heart rate in Hz for ECG, or the wander frequency.
    ``channel`` "*" means every EMG channel. Posture changes use ``posture`` (the target posture).
    """

    kind: ConfounderKind
    channel: str = "*"
    onset_s: float | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, gt=0)
    amplitude_uv: float | None = Field(default=None, gt=0, le=100000)
    frequency_hz: float | None = Field(default=None, gt=0)
    posture: Posture | None = None
    count: int = Field(
        default=1, ge=1, le=1000, description="electrode_pop/cable_motion: repeats inside the interval"
    )

    @field_validator("frequency_hz")
    @classmethod
    def _mains_hz(cls, v: float | None, info: ValidationInfo) -> float | None:
        if info.data.get("kind") == "mains" and v is not None and v not in (50.0, 60.0):
            raise ValueError(f"mains frequency must be 50 or 60 Hz, got {v}")
        return v

    @model_validator(mode="after")
    def _posture_fields(self) -> ConfounderSpec:
        if self.kind == "posture" and self.posture is None:
            raise ValueError("posture: a posture change needs the target posture")
        if self.kind != "posture" and self.posture is not None:
            raise ValueError(f"posture: only posture changes have a posture, not {self.kind}")
        if self.kind == "posture" and self.channel not in ("*", "ACC"):
            raise ValueError('channel: posture changes are on the accelerometer ("ACC")')
        return self


class ProfileSpec(_Model):
    """A patient profile that adds stochastic events drawn from the scenario seed.

    ``sci``: spinal cord injury, frequent twitches, phasic spasms and clonus, the odd tonic spasm.
    ``parkinson``: rest tremor episodes on the accelerometer, some voluntary movement.
    ``healthy``: voluntary movement and posture changes only (labelled as confounders).
    ``none``: only the scripted events. The rates can be overridden; ``channels`` restricts the
    channels spasms appear on (default: all).
    """

    kind: ProfileKind = "none"
    events_per_min: float | None = Field(default=None, ge=0, le=30)
    voluntary_per_min: float | None = Field(default=None, ge=0, le=30)
    posture_changes_per_hour: float | None = Field(default=None, ge=0, le=600)
    mix: dict[EventType, float] | None = Field(default=None, description="relative weights per event type")
    peak_uv: tuple[float, float] = Field(default=(40.0, 400.0), description="spasm peak envelope range")
    channels: list[str] | None = None
    start_s: float = Field(default=1.0, ge=0, description="no stochastic event before this time")

    @field_validator("peak_uv")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 5000:
            raise ValueError(f"need 0 < low <= high <= 5000 uV, got {list(v)}")
        return v

    @field_validator("mix")
    @classmethod
    def _weights(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and (any(w < 0 for w in v.values()) or sum(v.values()) <= 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return v


class ActivitySpec(_Model):
    """A stretch of deliberate movement (firmware_sim.signals models each kind physiologically).

    Everything inside it is voluntary EMG and movement: a non-event the detector must not report
    (it is exported as a ``voluntary`` confounder label carrying the activity kind). Spasms may be
    scripted inside it with ``events``; the profile's stochastic spasms keep out of it.
    ``cadence_hz`` is the stride (walk), pedal (cycling), push (wheelchair) or repetition (exercise)
    frequency; ``intensity_uv`` the peak RMS envelope of the most active muscle.
    """

    kind: ActivityKind
    onset_s: float = Field(ge=0)
    duration_s: float | None = Field(default=None, gt=0, le=7200)
    cadence_hz: float | None = Field(default=None, gt=0.1, le=3.0)
    intensity_uv: float = Field(default=120.0, gt=0, le=3000)

    @property
    def effective_duration_s(self) -> float:
        return self.duration_s if self.duration_s is not None else ACTIVITY_DEFAULTS[self.kind][0]

    @property
    def effective_cadence_hz(self) -> float | None:
        if ACTIVITY_DEFAULTS[self.kind][1] is None:
            return None
        return self.cadence_hz if self.cadence_hz is not None else ACTIVITY_DEFAULTS[self.kind][1]

    @model_validator(mode="after")
    def _cadence_only_rhythmic(self) -> ActivitySpec:
        if self.cadence_hz is not None and ACTIVITY_DEFAULTS[self.kind][1] is None:
            raise ValueError(
                f"cadence_hz: a {self.kind} is not rhythmic; only walk, cycling, exercise, wheelchair"
            )
        return self


class Interval(_Model):
    """A stretch of time: ``at_s`` from the start of the recording, lasting ``duration_s``."""

    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)


class FaultSpec(_Model):
    """Device and link misbehaviour, as data. ``firmware_sim.device`` applies it frame by frame.

    Probabilities are per frame. Random choices use :meth:`Scenario.fault_rng`, so a scenario's
    faults are as reproducible as its signals.
    """

    frame_loss_rate: float = Field(default=0.0, ge=0, lt=1, description="i.i.d. probability a frame is lost")
    loss_bursts_per_min: float = Field(
        default=0.0, ge=0, le=60, description="random bursts of consecutive losses"
    )
    loss_burst_frames: int = Field(
        default=20, ge=1, le=100000, description="mean frames lost per random burst"
    )
    loss_bursts: list[Interval] = Field(default_factory=list, description="scripted bursts: every frame lost")
    corrupt_rate: float = Field(
        default=0.0, ge=0, lt=1, description="probability a frame has corrupted bytes"
    )
    corrupt_bytes: int = Field(default=1, ge=1, le=64, description="bytes flipped in a corrupted frame")
    duplicate_rate: float = Field(default=0.0, ge=0, lt=1)
    reorder_rate: float = Field(
        default=0.0, ge=0, lt=1, description="probability a frame swaps with the next"
    )
    disconnects: list[Interval] = Field(default_factory=list, description="link down; device keeps sampling")
    reboot_at_s: list[float] = Field(default_factory=list, description="device reboots: counters restart")
    reboot_downtime_s: float = Field(default=2.0, ge=0, le=600)
    clock_drift_ppm: float = Field(default=0.0, ge=-1000, le=1000)
    jitter_ms: float = Field(default=0.0, ge=0, le=5000, description="std of host arrival jitter")
    battery_start_pct: float = Field(default=100.0, ge=0, le=100)
    battery_drain_pct_per_hour: float = Field(default=0.0, ge=0, le=10000)
    seed: int | None = Field(
        default=None, description="fault RNG seed; default derived from the scenario seed"
    )

    @field_validator("reboot_at_s")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        if any(t < 0 for t in v):
            raise ValueError("reboot times must be >= 0")
        return sorted(v)


class Scenario(_Model):
    """A complete, seeded description of one simulated recording."""

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    seed: int = Field(ge=0, lt=2**63)
    duration_s: float = Field(gt=0, le=7 * 24 * 3600)
    emg_rate_hz: int = Field(default=2000, ge=500, le=4000)
    acc_rate_hz: int = Field(default=100, ge=25, le=400)
    channels: list[str] = Field(
        default_factory=lambda: ["EMG L quad", "EMG R quad"], min_length=1, max_length=16
    )
    rest_uv: float = Field(default=3.0, gt=0, le=50, description="resting RMS per channel, uV")
    crosstalk: float = Field(
        default=0.03, ge=0, le=0.5, description="fraction of a channel leaking into neighbours"
    )
    emg_full_scale_uv: float = Field(
        default=6000.0, ge=100, le=1e6, description="ADC rails: samples clip here"
    )
    acc_full_scale_g: float = Field(default=8.0, ge=1, le=64)
    posture: Posture = Field(default="sitting", description="posture at the start")
    profile: ProfileSpec = Field(default_factory=ProfileSpec)
    events: list[EventSpec] = Field(default_factory=list)
    confounders: list[ConfounderSpec] = Field(default_factory=list)
    activities: list[ActivitySpec] = Field(default_factory=list)
    faults: FaultSpec = Field(default_factory=FaultSpec)

    @field_validator("channels")
    @classmethod
    def _unique_labels(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("channel labels must be unique")
        for label in v:
            if not label.strip() or label in ("*", "ACC"):
                raise ValueError(f"invalid channel label {label!r}")
            if len(label.encode("utf-8")) > MAX_LABEL_BYTES:  # the device announces it in INFO
                raise ValueError(
                    f"channel label {label!r} is {len(label.encode('utf-8'))} bytes in UTF-8; "
                    f"the wire protocol allows {MAX_LABEL_BYTES}"
                )
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        chans = set(self.channels)
        for i, ev in enumerate(self.events):
            key = f"events[{i}]"
            if ev.channel not in chans and not (ev.type == "tremor" and ev.channel == "ACC"):
                raise ValueError(
                    f"{key}.channel: unknown channel {ev.channel!r}; channels are {self.channels}"
                )
            if ev.onset_s + ev.effective_duration_s > self.duration_s:
                raise ValueError(
                    f"{key}.onset_s: event ends at {ev.onset_s + ev.effective_duration_s:.3f} s, "
                    f"after the end of the recording ({self.duration_s} s)"
                )
        for i, cf in enumerate(self.confounders):
            key = f"confounders[{i}]"
            if cf.channel not in chans and cf.channel not in ("*", "ACC"):
                raise ValueError(
                    f"{key}.channel: unknown channel {cf.channel!r}; channels are {self.channels}"
                )
            if cf.channel == "ACC" and cf.kind not in ACC_ONLY_KINDS and cf.kind != "voluntary":
                raise ValueError(f"{key}.channel: {cf.kind} is an EMG confounder, not on the accelerometer")
            if cf.onset_s is not None and cf.onset_s >= self.duration_s:
                raise ValueError(
                    f"{key}.onset_s: starts after the end of the recording ({self.duration_s} s)"
                )
        for i, act in enumerate(self.activities):
            if act.onset_s + act.effective_duration_s > self.duration_s:
                raise ValueError(
                    f"activities[{i}].onset_s: activity ends at "
                    f"{act.onset_s + act.effective_duration_s:.3f} s, "
                    f"after the end of the recording ({self.duration_s} s)"
                )
        if self.profile.channels is not None:
            for j, c in enumerate(self.profile.channels):
                if c not in chans:
                    raise ValueError(
                        f"profile.channels[{j}]: unknown channel {c!r}; channels are {self.channels}"
                    )
        for name, intervals in (
            ("loss_bursts", self.faults.loss_bursts),
            ("disconnects", self.faults.disconnects),
        ):
            for i, iv in enumerate(intervals):
                if iv.at_s >= self.duration_s:
                    raise ValueError(
                        f"faults.{name}[{i}].at_s: after the end of the recording ({self.duration_s} s)"
                    )
        for i, t in enumerate(self.faults.reboot_at_s):
            if t >= self.duration_s:
                raise ValueError(
                    f"faults.reboot_at_s[{i}]: after the end of the recording ({self.duration_s} s)"
                )
        return self

    def fault_rng(self) -> np.random.Generator:
        """The RNG for frame-level faults: independent of the signal RNG streams, same seed, same faults."""
        seed = self.faults.seed if self.faults.seed is not None else self.seed
        return np.random.default_rng([seed, 0xFA017])

    @property
    def n_channels(self) -> int:
        return len(self.channels)


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a scenario given as a dict (already parsed TOML). Raises ScenarioError."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(format_errors(source, err.errors())) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file. Errors name the file and the key at fault, through
    the one settings reader (``detectors.configfile``)."""
    p = Path(path)
    try:
        data = load_toml(p, "scenario")
    except ConfigError as err:
        raise ScenarioError(str(err)) from None
    return parse_scenario(data, str(p))


def _scenario_dir() -> Any:
    return resources.files("firmware_sim") / "scenarios"


def builtin_scenario_names() -> list[str]:
    """Names of the scenarios shipped in firmware_sim/scenarios/ (sorted)."""
    return sorted(f.name[: -len(".toml")] for f in _scenario_dir().iterdir() if f.name.endswith(".toml"))


def builtin_scenario(name: str) -> Scenario:
    """Load a shipped scenario by name (``demo``, ``e2e_short``, ...)."""
    f = _scenario_dir() / f"{name}.toml"
    if not f.is_file():
        raise ScenarioError(
            f"no built-in scenario {name!r}; available: {', '.join(builtin_scenario_names())}"
        )
    with resources.as_file(f) as p:
        return load_scenario(p)


def resolve_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a TOML file by path (what every command's scenario argument means).

    Here, beside the loader and not in the commands, so that a command checks its argument before
    it imports the signal models (scipy.signal, about a second): a mistyped name is a one-line error
    at once.
    """
    p = Path(name_or_path)
    if p.exists() and not p.is_file():  # a FIFO would block the TOML reader for ever
        raise ScenarioError(f"{p}: not a regular file, not a scenario")
    if name_or_path.endswith(".toml") or p.exists():
        return load_scenario(name_or_path)
    if name_or_path not in builtin_scenario_names():
        known = ", ".join(builtin_scenario_names())
        raise ScenarioError(
            f"{name_or_path}: not a scenario file, and no built-in scenario of that name; built-in: {known}"
        )
    return builtin_scenario(name_or_path)
