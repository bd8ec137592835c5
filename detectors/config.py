"""Detector configuration: one frozen dataclass, constructible from a TOML section.

Every threshold is relative to the channel's own resting level or expressed in physiological units
(Hz, seconds, uV, g), never in samples, so one configuration works at any sample rate (EMG 500-4000
Hz, accelerometer 25-400 Hz) and on any electrode.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A detector configuration value is missing, unknown, of the wrong type or out of range."""


#: Upper bounds of the keys that size filters, rings and waits (defaults are far below them).
_UPPER: dict[str, float] = {
    "band_order": 12, "mains_max_harmonic": 20, "baseline_window_s": 3600.0, "max_episode_s": 3600.0,
    "tremor_window_s": 60.0, "activity_window_s": 60.0, "gait_template_s": 600.0,
    "rhythm_lookahead_s": 60.0, "activity_max_wait_s": 60.0, "lead_off_guard_before_s": 60.0,
    "lead_off_guard_after_s": 60.0, "mains_detect_s": 60.0, "own_part_step_s": 10.0,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Streaming spasm detector settings (defaults are physiology-based; see docs/detector.md)."""

    # --- preprocessing -------------------------------------------------------------------------
    #: Mains frequency to notch (50 or 60). None: detect it from the first ``mains_detect_s`` of
    #: EMG (processing is held back until then); no notch if no hum is found.
    mains_hz: int | None = None
    #: Highest mains harmonic notched (1 = fundamental only, 0 = no notch); odd harmonics only
    #: (1, 3, 5, ...). Harmonics above the band-pass top are skipped.
    mains_max_harmonic: int = 5
    notch_q: float = 30.0
    mains_detect_s: float = 1.0
    band_low_hz: float = 20.0
    #: Capped at 0.45 x the sample rate, so 500 Hz EMG gets 20-225 Hz.
    band_high_hz: float = 450.0
    band_order: int = 4
    #: Rate of the power envelope the decision logic runs on (integer decimation of the EMG rate).
    envelope_rate_hz: float = 200.0
    #: Low-pass on the power envelope: fast enough to resolve 8 Hz clonus bursts.
    envelope_cutoff_hz: float = 25.0
    #: Processing block: the detector works on fixed blocks of this length aligned to the stream,
    #: which is what makes it chunk-invariant; it is also the alerting latency floor.
    block_s: float = 0.05
    # --- adaptive resting baseline ---------------------------------------------------------------
    baseline_window_s: float = 20.0
    #: Low percentile of 50 ms block powers over the window: bursts, even frequent ones, do not
    #: move it, and blocks during an episode are not entered at all.
    baseline_percentile: float = 10.0
    baseline_update_s: float = 1.0
    baseline_min_s: float = 0.5
    # --- onset / offset ---------------------------------------------------------------------------
    #: Onset: envelope above max(on_ratio x rest, rest + on_min_delta_uv). x8 (+18 dB) keeps the
    #: resting envelope's own fluctuation (worst at 500 Hz, where the band is narrow) far below it.
    on_ratio: float = 8.0
    on_min_delta_uv: float = 8.0
    #: "Back near rest": below max(off_ratio x rest, rest + off_min_delta_uv, off_peak_fraction x
    #: the episode's peak so far); the last term ends a big burst at its tail rather than letting
    #: the low after-activity that follows strong spasms stretch it.
    off_ratio: float = 2.0
    off_min_delta_uv: float = 2.0
    off_peak_fraction: float = 0.05
    #: ...and in a confirmed episode that peak is held for this long, then fades with this time
    #: constant (the running maximum of the faded envelope): after-activity follows the burst it
    #: is the tail of within a fraction of a second (cut as before), while a sustained (tonic)
    #: contraction seconds after its strongest moment is judged against rest (hysteresis
    #: relative to the baseline), not against that moment. Without it 5 % of a 400x-rest surge
    #: lies above the 20x-rest plateau that follows it, and the plateau "ends" the episode and
    #: comes back at once as a second event.
    off_peak_memory_s: float = 2.0
    #: Time above the onset threshold before the early Onset notice is sent (min burst length).
    confirm_s: float = 0.025
    #: The Onset notice waits this long after the crossing, so the spectral artefact test below
    #: sees an artefact's low-frequency ring-down (it lags the broadband edge by tens of ms).
    judge_s: float = 0.05
    #: Offset at the start of at least this long back near rest (AASM-style).
    quiet_s: float = 0.5
    #: Within that quiet period, flickers above "rest" (but below onset) this short are tolerated:
    #: the resting envelope itself crosses 2x rest now and then.
    quiet_blip_s: float = 0.1
    #: A clonus goes on while its beats do: in an episode whose last two beats (rises through
    #: the onset level from near rest) came at a clonus rhythm (``clonus_min_hz``-
    #: ``clonus_max_hz``, with ``clonus_jitter``), a flicker below onset reaching ``active_level``
    #: within ``clonus_beat_gap`` of its periods after the last beat is a weak beat, not a
    #: flicker, and restarts the quiet period. ``active_level`` places that level between the
    #: offset and the onset level on a log scale (0 = the offset level, 1 = the onset level: the
    #: rule is off; 0.5 = their geometric mean, 4x rest by default): resting noise flickers just
    #: above the offset level (an envelope 4x its rest is a power estimate 16x its mean, far out
    #: of the resting envelope's spread), while the reflex volleys of a clonus vary in strength
    #: beat to beat and a weak one between strong ones is still the clonus (Dimitrijevic, Nathan
    #: & Sherwood, Brain 1980).
    active_level: float = 0.5
    #: A weak beat counts from (1 - ``clonus_jitter``) to this many clonus periods after the last
    #: beat: earlier it is that beat's own tail, later the rhythm has stopped (one missed beat).
    clonus_beat_gap: float = 2.5
    settle_s: float = 0.1
    max_episode_s: float = 300.0
    #: At most this share of the power in excess of rest may lie below 45 Hz: surface EMG has
    #: most of its power at 50-150 Hz, while ECG pickup, cable motion and electrode pops, once
    #: band-passed, keep their energy near the 20 Hz edge.
    artefact_low_fraction: float = 0.42
    #: A burst is cross-talk when another channel is this many times stronger at confirmation...
    crosstalk_ratio: float = 8.0
    #: ...and its band-passed waveform is the neighbours': cross-talk is the same motor units seen
    #: through the tissue (instantaneous, low-passed), two muscles fire different units. A weak
    #: burst is a muscle of its own when lagged copies (+-3 ms) of the stronger channels explain
    #: less than this share of its power, over up to ``crosstalk_window_s`` from its onset
    #: (``detectors/crosstalk.py``; a copy mixed with the muscle's own activity stays cross-talk
    #: until its own part dominates). Above 1:
    #: the amplitude ratio alone decides (as before).
    crosstalk_copy_share: float = 0.5
    crosstalk_window_s: float = 0.3
    # --- classification ---------------------------------------------------------------------------
    twitch_max_s: float = 0.5
    tonic_min_s: float = 10.0
    clonus_min_hz: float = 3.0
    clonus_max_hz: float = 8.0
    clonus_min_cycles: int = 4
    #: Allowed deviation of each burst interval from the run's median interval (fraction).
    clonus_jitter: float = 0.3
    #: A run goes on across up to this many weak beats in a row: an interval of 2 (.. this + 1)
    #: of the run's periods, with the envelope above the low hysteresis level
    #: (``clonus_burst_low``) where each missing beat was due, is that many periods (a reflex
    #: volley below half the clonus's height is still a beat, not a pause). 0: off.
    clonus_skip_beats: int = 1
    #: A spasm fused with a much weaker burst of its muscle (during activity: a gait, pedal or
    #: push burst less than ``quiet_s`` away) is typed and dated by its own part: the fused
    #: burst lies below 1/``own_part_ratio`` of the episode's peak, lasts >= ``own_part_min_s``
    #: and falls back before the spasm rises (``emg_episodes.own_part``).
    own_part_ratio: float = 3.0
    own_part_min_s: float = 0.2
    #: ...with a valley at most this share of the fused burst's maximum; the spasm's part starts
    #: (ends) where its envelope is ``own_part_edge`` of the way from that valley to its peak.
    own_part_dip: float = 0.67
    own_part_edge: float = 0.1
    #: ...or, with no valley, where it climbs out of the fused burst's level (``own_part_edge``
    #: of the way from the burst's median to the peak) to 80 % of the peak within this long: a
    #: reflex rising on top of a voluntary burst that is still on (0: off; ``_step_from``).
    own_part_step_s: float = 0.1
    #: A clonus fused with the gait or pedal bursts of its muscle (one long episode whose
    #: envelope follows the movement cycle) is still a clonus when a regular clonic run of at
    #: least this many beats lies inside it, at >= ``movement_clonus_cycle_ratio`` times the
    #: cycle's frequency: 3-8 Hz is far faster than any voluntary rhythm (gait 0.5-2.5 Hz). Six
    #: beats (over a second at 5 Hz): more than the few beats a pedal stroke's or a stride's
    #: burst can hold by chance, and more than the ``clonus_min_cycles`` of a whole clonus
    #: episode, because here the run has to stand out inside a voluntary contraction. 0: off.
    movement_clonus_min_beats: int = 6
    movement_clonus_cycle_ratio: float = 2.5
    #: ...looked for in windows this long, each with its own burst height (``_clonic_part``).
    movement_clonus_window_s: float = 3.0
    # --- tremor (accelerometer) -------------------------------------------------------------------
    tremor_min_hz: float = 3.0
    tremor_max_hz: float = 12.0
    tremor_min_s: float = 3.0
    tremor_window_s: float = 2.0
    tremor_hop_s: float = 0.125
    tremor_min_rms_g: float = 0.01
    #: Share of 1-20 Hz movement power within +-0.75 Hz of the spectral peak: rhythmic, not posture.
    tremor_peak_ratio: float = 0.45
    tremor_freq_tol_hz: float = 1.5
    # --- signal quality -------------------------------------------------------------------------
    flat_range_uv: float = 1.0
    lead_off_dc_uv: float = 100_000.0
    #: Amplifier full scale (uV) if known; otherwise saturation is recognised by clipping plateaus.
    full_scale_uv: float | None = None
    saturation_min_range_uv: float = 1000.0
    #: A floating (lead-off) input: a block whose variance is mostly one 50/60 Hz sinusoid this big.
    lead_off_mains_uv: float = 300.0
    #: A block is "saturated" (a quality gap) when this share of its samples sits at one rail.
    rail_fraction: float = 0.05
    #: ...except inside an EMG burst, where up to this share is a strong contraction touching the
    #: rails (one event, flagged ``clipped``, never split): the real recordings of issue 9 clip
    #: < 1 % of their samples overall, a few % in the strongest blocks.
    saturation_fraction: float = 0.25
    quality_hold_s: float = 0.2
    #: A channel is reported ok again only after this long of good blocks (dated where they
    #: began): while an electrode comes loose or is pressed back, contact is intermittent, and a
    #: flicker of good blocks between bad ones is still one lead-off (one quality record).
    quality_recover_s: float = 0.5
    # --- activity context (issue 9; docs/detector.md "Spasms, not movement") -------------------
    #: Master switch: False restores the context-free detector (every burst is a spasm).
    activity_context: bool = True
    #: Accelerometer verdict hop and analysis window (the window holds >= 2 strides at 0.5 Hz).
    #: The hop sets the cost, not the latency: context is read from hops ending before a time.
    activity_hop_s: float = 0.25
    activity_window_s: float = 4.0
    #: Gravity rotation between the last half second and the half second one second before that
    #: marks a posture transition in progress (standing up turns the thigh ~80 deg in ~1.5 s, a
    #: transfer leans the trunk 30-40 deg; a spasm's jerk leaves gravity where it was).
    activity_tilt_deg: float = 20.0
    #: Movement RMS (g, 20 Hz block means) below which the limb is at rest (sensor noise ~0.005 g).
    activity_min_rms_g: float = 0.04
    #: Normalised autocorrelation at a 0.4-2 s lag that makes movement rhythmic (gait, pedalling).
    activity_rhythm_r: float = 0.5
    #: Share of the window's movement power in the voluntary-rhythm band (0.4-2.5 Hz) below which a
    #: repeating movement is not a voluntary rhythm: a tremor (3-12 Hz) or clonus (4-8 Hz) that
    #: survives the 3 Hz low-pass still repeats at whole multiples of its period inside the 0.4-2 s
    #: lags, but its power lies above the band (a stride, pedal or push puts half or more in it).
    activity_rhythm_band_share: float = 0.1
    #: Impact (g above gravity) that makes rhythmic movement walking (heel strikes: 1-3 g on the shank).
    activity_impact_g: float = 0.5
    #: RMS frequency of the movement at or below which it is smooth, i.e. purposeful (minimum-jerk).
    activity_smooth_hz: float = 2.0
    #: Debounce of activity periods: enter after this long active, leave after this long at rest.
    activity_enter_s: float = 0.5
    activity_exit_s: float = 2.0
    #: Context window around a burst: from ``activity_before_s`` before its onset to
    #: ``activity_after_s`` after its offset; a share >= ``activity_share`` of non-rest verdicts
    #: there makes it a burst "during activity".
    activity_before_s: float = 1.0
    activity_after_s: float = 1.0
    activity_share: float = 0.2
    #: A muscle falls silent between the bursts of a movement cycle: a stretch this long back near
    #: rest inside one episode (bursts closer than ``quiet_s`` merged into it) is such a silence
    #: (between strides at 2 Hz stepping about 0.2 s, between pedal strokes 0.3-0.6 s).
    cycle_silence_s: float = 0.15
    #: Movement during a published spasm and for this long after it is that spasm's doing (the
    #: jerk, the limb falling back and settling), not a voluntary movement already under way
    #: when the next burst starts: the "before" window of a burst begins after it.
    spasm_settle_s: float = 1.0
    #: Recruitment-graded voluntary force ramps over hundreds of ms (Henneman's size principle):
    #: a burst during activity rising slower than this (onset to 80 % of peak) is voluntary.
    voluntary_min_rise_s: float = 0.08
    #: The rise time is read on the power envelope averaged (centred) over this long: at a burst's
    #: edge few motor units are active, each discharging once or twice per 50 ms (8-30 Hz), so a
    #: single early discharge must not count as "80 % of the plateau".
    rise_smoothing_s: float = 0.05
    #: A burst rising this slowly (onset to 80 % of its plateau) that starts a movement from rest
    #: is the start of a voluntary movement (self-paced voluntary EMG ramps over 0.2-0.5 s; a
    #: reflex spasm, and the spasms of both simulators, reach 80 % within ~0.2 s).
    voluntary_ramp_s: float = 0.25
    #: Below this a rise says nothing about recruitment (reflex spasms reach their plateau
    #: within tens of ms to ~0.2 s); between it and ``voluntary_ramp_s`` the evidence grows
    #: linearly, and a burst and its co-contracting partner add theirs (common drive).
    voluntary_ramp_ambiguous_s: float = 0.2
    #: Clonus starts with a reflex volley: each beat is a synchronous discharge of the stretch
    #: reflex, so the first beat already reaches the run's height (Dimitrijevic, Nathan &
    #: Sherwood, Brain 1980; Beres-Jones, Johnson & Harkema, Exp Brain Res 2003). An episode typed
    #: clonus whose rise (onset to 80 % of its plateau) takes longer than this many of its own
    #: periods built up by recruitment: a graded contraction whose few recruited motor units beat
    #: at 3-8 Hz (unfused discharge, physiological tremor). It is judged by the voluntary rules
    #: like any other burst (still typed clonus if published); an abrupt clonus never is. A large
    #: value (e.g. 100) turns this off.
    clonus_reflex_periods: float = 1.5
    #: Voluntary rhythm of one channel's bursts: intervals within these bounds (s), each within
    #: ``rhythm_jitter`` of the run's median, at least ``rhythm_min_bursts`` bursts in a run.
    rhythm_min_interval_s: float = 0.4
    rhythm_max_interval_s: float = 2.5
    rhythm_jitter: float = 0.25
    #: Phase-locking tolerance (fraction of the rhythm period) of gait/pedal bursts.
    phase_tolerance: float = 0.15
    rhythm_min_bursts: int = 3
    #: Repetitions of a movement during accelerometer activity (or a declared session): a burst
    #: whose channel bursts at regular intervals up to this long (each within ``rhythm_jitter`` of
    #: the run's median, ``rhythm_min_bursts`` in a run, before and after it), each burst of the
    #: run lasting within ``repetition_duration_ratio`` of this one, is that movement's burst,
    #: whatever its rise or envelope (``activity.repetition_run``). Physiotherapy and strength
    #: exercise is paced at 1-3 s per phase (concentric, eccentric, pause: 2-6 s a repetition;
    #: ACSM position stand 2009), slower than the 2.5 s of the gait and pedal rhythms.
    repetition_max_interval_s: float = 6.0
    #: One motor program drives every repetition (a stride, a knee extension), so its bursts
    #: last alike: stride-to-stride variability of a gait burst's duration is 10-20 % (Winter
    #: 1991); a spasm in the slot of a repetition lasts as long as the reflex does.
    repetition_duration_ratio: float = 1.5
    #: Events wait this long after their offset for later bursts (a rhythm is seen both ways).
    rhythm_lookahead_s: float = 3.5
    #: Onsets and events wait at most this long (EMG time) for the accelerometer to catch up,
    #: so a stalled accelerometer cannot hold alerts back for ever. Outputs are chunk-invariant
    #: as long as the two streams are fed within this much of each other (a device sends them
    #: in the same frames; a stalled accelerometer should be reported with ``gap``).
    activity_max_wait_s: float = 5.0
    #: Bursts starting within this of each other on >= 3 channels with smooth movement form a
    #: voluntary synergy (reaching, lifting: agonists plus anticipatory postural muscles).
    #: Anticipatory postural adjustments start ~50-150 ms before the focal muscle (Aruin & Latash
    #: 1995) and a graded bell crosses the onset threshold at a time that depends on its gain, so
    #: the detected onsets of one synergy spread over a few hundred ms.
    synergy_window_s: float = 0.5
    #: A sustained episode whose envelope rises and falls at a voluntary cyclic rhythm
    #: (``rhythm_min_interval_s``-``rhythm_max_interval_s`` periods: pushes, strides, pedal
    #: strokes) is movement, not a tonic spasm (``rhythm.cyclic_modulation``): the envelope is
    #: averaged in ``cyclic_block_s`` blocks, low-passed (zero phase) at ``cyclic_lowpass_hz``,
    #: between the fastest voluntary cycle (2.5 Hz) and clonus (4-8 Hz; it also removes the
    #: motor units' 8-30 Hz discharge granularity), detrended, and needs an autocorrelation
    #: peak >= ``cyclic_envelope_r`` at a period that fits ``cyclic_min_cycles`` times, with a
    #: depth (RMS over mean) >= ``cyclic_min_depth``.
    cyclic_block_s: float = 0.05
    cyclic_lowpass_hz: float = 3.0
    cyclic_envelope_r: float = 0.5
    cyclic_min_cycles: int = 3
    cyclic_min_depth: float = 0.15
    #: Electrode trouble around a lead-off (or a railed input): a burst ending at most
    #: ``lead_off_guard_before_s`` before the channel went bad (the electrode coming loose: half
    #: contact lasts up to seconds; every event waits this long + 0.3 s past its offset, so 3 s
    #: catches more transitions but delays events by 3.3 s), or starting within
    #: ``lead_off_guard_after_s`` after it recovered (the electrode settling), is not dropped
    #: blind: one that ran into the bad state, or was never seen rising from rest after the
    #: recovery, is the electrode (dropped);
    #: any other is published flagged ``artifact_suspect``, its confidence times
    #: ``artifact_suspect_confidence``.
    lead_off_guard_before_s: float = 0.5
    lead_off_guard_after_s: float = 3.0
    #: ... and one whose raw EMG-band power (over its last 2 s, at least 0.5 s) sits on the mains
    #: lines by at least this share (a half-contacting input's hum), or below ``artefact_band_hz``
    #: by more than ``artefact_low_fraction`` (drift, DC steps), is the electrode too (dropped).
    electrode_line_share: float = 0.5
    #: Anywhere (near a lead-off or not): a burst whose raw EMG-band power is mostly on the mains
    #: lines (``electrode_line_share``), with that line's power this many times higher or lower
    #: than over the half second before, is the contact's impedance changing (dropped). 2 in
    #: power: the hum's amplitude changed by 41 % either way (a steady contact under a real
    #: spasm kept it within 11 % on the rest bench; a half-contacting one moves it by x2-x100).
    electrode_hum_change: float = 2.0
    #: Anywhere: a burst whose raw power above ``artefact_band_hz`` off the mains lines, over the
    #: burst itself, is less than this many times the resting power is not in the input: the
    #: band-pass and notches ringing after a sharp edge (a DC step, a knock on the cable; a Q-30
    #: notch rings ~0.2 s) that the envelope read as a burst (dropped). A real burst held the
    #: onset level (``on_ratio`` squared, 64x in power) for ``confirm_s``: >= ~11x over the
    #: shortest window read; resting noise reads ~1.
    input_power_ratio: float = 2.5
    #: Within ``lead_off_guard_after_s`` of a reattachment: a burst whose raw EMG band (above
    #: ``artefact_band_hz``, off the mains lines), divided by its own running RMS over
    #: ``crackle_window_s``, has a kurtosis above this is contact crackle (isolated 1-4 ms spikes
    #: of an intermittent contact; Huigen et al. 2002), not a muscle: an interference pattern of
    #: asynchronous motor units is near Gaussian once its envelope is divided out (kurtosis 3).
    #: 4.5: 3 plus ~3 standard errors of the estimate over the shortest burst read (0.15 s of a
    #: ~400 Hz band: sqrt(24 / 120) = 0.45). 0 turns it off.
    crackle_kurtosis: float = 4.5
    #: The running RMS window of that test: longer than a MUAP (5-15 ms), shorter than a twitch.
    crackle_window_s: float = 0.025
    artifact_suspect_confidence: float = 0.5
    #: Confidence factor for a spasm found during voluntary activity.
    activity_confidence: float = 0.75
    # --- gait phase (detectors/gait_phase.py; docs/detector.md "Spasms during walking") ---------
    #: Master switch of the gait-phase model: False leaves every burst during walking or rhythmic
    #: exercise to the rhythm rules alone (a spasm fused with a gait burst is then missed).
    gait_phase: bool = True
    #: Template of a channel's gait: its last this many bursts during walking/rhythmic exercise
    #: (~8 strides: long enough for a median and MAD, short enough to follow a change of pace)...
    gait_template_strides: int = 8
    #: ...that ended at most this long before the judged burst (8 strides at 0.4 Hz)...
    gait_template_s: float = 20.0
    #: ...and at least this many of them (fewer: the model abstains, e.g. the first strides).
    gait_min_strides: int = 4
    #: Half-width (cycles) of a muscle's phase window, at least (as ``phase_tolerance``): burst
    #: timing varies by a few % of the cycle stride to stride in normal gait, more in spastic gait
    #: and with changes of pace (Winter 1991).
    gait_phase_window: float = 0.15
    #: ...or this many circular SDs (1/sqrt(kappa) of the von Mises fit to the template's own phase
    #: errors), whichever is wider.
    gait_phase_z: float = 3.0
    #: Mean resultant length of the template's phase errors below which the muscle is not
    #: phase-locked at all, and the phase window test abstains (0.7: circular SD ~0.13 cycle).
    gait_min_locking: float = 0.7
    #: A burst stronger than this many times the template's median peak (and ``gait_mad_z`` robust
    #: SDs above it) is not a gait burst: stride-to-stride variability of gait EMG peaks is 20-40 %
    #: (Winter & Yack 1987), so 2.5x lies several SDs out.
    gait_amplitude_ratio: float = 2.5
    gait_mad_z: float = 5.0
    #: A burst that keeps its muscle active through this share of the stride where that muscle is
    #: normally silent (stride minus its median burst length; half: well beyond the stride-to-stride
    #: variability of a gait burst's duration, even of one merging two bumps) is prolonged, and not following
    #: the cycle if it also ends out of the muscle's offset window (gait bursts merged into one
    #: episode end in it, whole strides on)...
    gait_silence_share: float = 0.5
    #: ...or if merged gait bursts cannot explain it: from the template's silences (one burst's
    #: offset to the next one's onset; median and robust SD, 1.4826 x MAD, at least one block),
    #: the chance that every silence the burst spans is shorter than ``quiet_s`` is below that
    #: of a normal deviate beyond this many SDs.
    gait_silence_z: float = 3.0
    #: Two channels alternate (reciprocal inhibition) when their template bursts overlap by at
    #: most this share of the judged channel's active time...
    gait_alternation_overlap: float = 0.1
    #: ...and a burst during which an alternating partner is active this share of the time is a
    #: co-contraction.
    gait_cocontraction_share: float = 0.5
    #: Rise (onset to 80 % of the peak) at or below which an onset is abrupt: a reflex spasm
    #: reaches its peak in tens of ms (Hallett et al. 1975). Raises the confidence only.
    gait_abrupt_rise_s: float = 0.05
    #: Confidence of a spasm found by one gait cue; each further cue halves the gap to 1.
    gait_confidence: float = 0.6
    # --- EMG internals (the constants the EMG bank's parts used to hard-code) --------------------
    #: The resting baseline is kept per segment of this length: each segment contributes the median
    #: of its block powers, so a QRS or an electrode pop in a few blocks does not move it.
    baseline_segment_s: float = 0.5
    #: Edge of the "artefact band": ECG pickup, cable motion and electrode pops, once band-passed,
    #: keep their energy below it, surface EMG mostly above it (``artefact_low_fraction``).
    artefact_band_hz: float = 45.0
    #: An onset is traced back from the threshold crossing to the last envelope row near rest, at
    #: most this far: a rise slower than this is not one onset.
    onset_backtrack_s: float = 0.3
    #: "Near rest" for that backtracking: this far from rest towards the offset level (0 = rest,
    #: 1 = the ``off_ratio`` level).
    onset_back_fraction: float = 0.5
    #: No onsets this long after a lead-off or saturated block: the filters ring after a step.
    settle_bad_s: float = 0.5
    #: A reattached electrode (a channel that forgot its rest) gets a provisional resting level
    #: from the median of its first clean blocks over this long after ``settle_bad_s``, until its
    #: first 0.5 s baseline segment is in: the settling contact's noise decays (Huigen et al.
    #: 2002), so its level so far is an upper bound of what follows. Four 50 ms blocks: the shortest
    #: median that one pop or crackle block cannot move. 0 turns it off.
    baseline_provisional_s: float = 0.2
    #: A flat block at the level a channel clipped at within this long is still saturated.
    rail_memory_s: float = 1.0
    #: Mains detection: a hum peak must hold this many times the power of the neighbouring bins.
    mains_detect_ratio: float = 10.0
    #: A floating input: a 50/60 Hz sinusoid holding at least this share of a block's variance,
    #: continuing the previous block's line within ``lead_off_hum_drift`` of its amplitude.
    lead_off_hum_share: float = 0.6
    lead_off_hum_drift: float = 0.5
    #: Clonus burst counting: hysteresis between these shares of the burst height over rest, and
    #: the regular run must cover at least ``clonus_min_coverage`` of the episode.
    clonus_burst_high: float = 0.5
    clonus_burst_low: float = 0.25
    clonus_min_coverage: float = 0.5
    #: A clonus falls silent between its beats: the median, over the run's periods, of each
    #: period's lowest envelope over rest as a share of its peak is at most this
    #: (``rhythm.trough_share``; measured: <= 0.055 on every clonus of the benches, >= 0.08 on all
    #: but one of the voluntary contractions and phasic spasms that beat at clonus rates). 1: off.
    clonus_max_trough: float = 0.07
    #: ...and repeats itself: the envelope's autocorrelation at one period over the run is at
    #: least this (``rhythm.periodicity``; measured: >= 0.23 on every clonus of the benches,
    #: 0.11 on the one wobble with silent troughs). -1: off.
    clonus_min_periodicity: float = 0.15

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"detector config key {f.name!r}: must be finite, got {value!r}")
        if self.mains_hz not in (None, 50, 60):
            raise ConfigError(
                f"detector config key 'mains_hz': must be 50, 60 or absent (auto), got {self.mains_hz!r}"
            )
        if not 0 < self.band_low_hz < self.band_high_hz:
            raise ConfigError(
                f"detector config keys 'band_low_hz'/'band_high_hz': need 0 < low < high, got "
                f"{self.band_low_hz}/{self.band_high_hz}"
            )
        positive = (
            "notch_q", "mains_detect_s", "envelope_rate_hz", "envelope_cutoff_hz", "block_s",
            "baseline_window_s", "baseline_update_s", "baseline_min_s", "confirm_s", "judge_s", "quiet_s",
            "max_episode_s", "twitch_max_s", "tonic_min_s", "tremor_min_s", "tremor_window_s",
            "tremor_hop_s", "tremor_min_rms_g", "quality_hold_s", "quality_recover_s", "flat_range_uv",
            "lead_off_dc_uv",
            "saturation_min_range_uv", "lead_off_mains_uv", "activity_hop_s", "activity_window_s",
            "activity_tilt_deg", "activity_min_rms_g", "activity_impact_g", "activity_smooth_hz",
            "activity_enter_s", "activity_exit_s", "rhythm_min_interval_s", "rhythm_max_interval_s",
            "rhythm_lookahead_s", "activity_max_wait_s", "synergy_window_s", "voluntary_ramp_s",
            "lead_off_guard_before_s", "lead_off_guard_after_s", "gait_template_s", "gait_phase_z",
            "gait_amplitude_ratio", "gait_mad_z", "gait_silence_z", "gait_abrupt_rise_s",
            "cyclic_block_s", "cyclic_lowpass_hz", "rise_smoothing_s", "off_peak_memory_s", "own_part_min_s",
            "cycle_silence_s",
            "lead_off_guard_before_s", "lead_off_guard_after_s",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"detector config key {name!r}: must be > 0, got {getattr(self, name)!r}")
        if not 1.0 < self.off_ratio <= self.on_ratio:
            raise ConfigError(
                "detector config keys 'off_ratio'/'on_ratio': need 1 < off <= on, "
                f"got {self.off_ratio}/{self.on_ratio}"
            )
        if not 0 < self.baseline_percentile < 50:
            raise ConfigError(
                f"detector config key 'baseline_percentile': need 0 < p < 50, got {self.baseline_percentile}"
            )
        if not 0 < self.clonus_min_hz < self.clonus_max_hz:
            raise ConfigError("detector config keys 'clonus_min_hz'/'clonus_max_hz': need 0 < min < max")
        if not 0 < self.tremor_min_hz < self.tremor_max_hz:
            raise ConfigError("detector config keys 'tremor_min_hz'/'tremor_max_hz': need 0 < min < max")
        if not (0 < self.own_part_dip < 1 and 0 < self.own_part_edge < 1):
            raise ConfigError(
                "detector config keys 'own_part_dip'/'own_part_edge': need 0 < each < 1, "
                f"got {self.own_part_dip}/{self.own_part_edge}"
            )
        if self.own_part_ratio <= 1:
            raise ConfigError(f"detector config key 'own_part_ratio': need > 1, got {self.own_part_ratio}")
        if self.clonus_skip_beats < 0:
            raise ConfigError(
                f"detector config key 'clonus_skip_beats': need >= 0, got {self.clonus_skip_beats}"
            )
        if self.movement_clonus_min_beats < 0:
            raise ConfigError(
                "detector config key 'movement_clonus_min_beats': need >= 0, "
                f"got {self.movement_clonus_min_beats}"
            )
        if self.movement_clonus_cycle_ratio <= 1:
            raise ConfigError(
                "detector config key 'movement_clonus_cycle_ratio': need > 1, "
                f"got {self.movement_clonus_cycle_ratio}"
            )
        if self.clonus_min_cycles < 2:
            raise ConfigError(
                f"detector config key 'clonus_min_cycles': need >= 2, got {self.clonus_min_cycles}"
            )
        if self.mains_max_harmonic < 0 or self.band_order < 1:
            raise ConfigError("detector config keys 'mains_max_harmonic' >= 0 and 'band_order' >= 1 required")
        for name, hi in _UPPER.items():
            # keys that size the detector's filters, rings and waits: a typo (1e12 for 12) must be
            # an error naming the key, not an allocation of terabytes or a detector that never decides
            if getattr(self, name) > hi:
                got = getattr(self, name)
                raise ConfigError(f"detector config key {name!r}: at most {hi:g}, got {got!r}")
        if not 0.01 <= self.block_s <= self.baseline_segment_s:
            raise ConfigError(
                f"detector config key 'block_s': need 0.01 s <= block_s <= baseline_segment_s "
                f"({self.baseline_segment_s:g} s: a segment holds whole blocks), got {self.block_s!r}"
            )
        if self.tremor_window_s < 1.0:
            raise ConfigError("detector config key 'tremor_window_s': need >= 1 s for a 3 Hz spectral peak")
        if self.rhythm_min_bursts < 2 or self.rhythm_min_interval_s >= self.rhythm_max_interval_s:
            raise ConfigError(
                "detector config keys 'rhythm_min_bursts' >= 2 and "
                "'rhythm_min_interval_s' < 'rhythm_max_interval_s' required"
            )
        if self.repetition_max_interval_s < self.rhythm_max_interval_s or self.repetition_duration_ratio < 1:
            raise ConfigError(
                "detector config keys 'repetition_max_interval_s' >= 'rhythm_max_interval_s' and "
                "'repetition_duration_ratio' >= 1 required"
            )
        if self.spasm_settle_s < 0:
            raise ConfigError(
                f"detector config key 'spasm_settle_s': must be >= 0, got {self.spasm_settle_s}"
            )
        if self.activity_window_s < 2.0 or self.activity_before_s < 0 or self.activity_after_s < 0:
            raise ConfigError(
                "detector config keys 'activity_window_s' >= 2 s, 'activity_before_s'/'activity_after_s' >= 0"
            )
        if not 2 <= self.gait_min_strides <= self.gait_template_strides:
            raise ConfigError(
                "detector config keys 'gait_min_strides'/'gait_template_strides': need 2 <= min <= template"
            )
        if self.cyclic_min_cycles < 2:
            raise ConfigError(
                f"detector config key 'cyclic_min_cycles': need >= 2, got {self.cyclic_min_cycles}"
            )
        if not 0 <= self.voluntary_ramp_ambiguous_s < self.voluntary_ramp_s:
            raise ConfigError(
                "detector config keys 'voluntary_ramp_ambiguous_s'/'voluntary_ramp_s': "
                "need 0 <= ambiguous < ramp"
            )
        if not 0 <= self.active_level <= 1:
            raise ConfigError(
                f"detector config key 'active_level': need 0 <= value <= 1, got {self.active_level}"
            )
        if self.clonus_beat_gap < 1:
            raise ConfigError(f"detector config key 'clonus_beat_gap': need >= 1, got {self.clonus_beat_gap}")
        if self.voluntary_min_rise_s < 0:
            raise ConfigError("detector config key 'voluntary_min_rise_s': must be >= 0")
        if self.clonus_reflex_periods <= 0:
            raise ConfigError(
                f"detector config key 'clonus_reflex_periods': must be > 0, got {self.clonus_reflex_periods}"
            )
        if self.full_scale_uv is not None and self.full_scale_uv <= 0:
            raise ConfigError(f"detector config key 'full_scale_uv': must be > 0, got {self.full_scale_uv}")
        for name in (
            "off_peak_fraction",
            "artefact_low_fraction",
            "tremor_peak_ratio",
            "rail_fraction",
            "saturation_fraction",
            "clonus_jitter",
            "activity_rhythm_r",
            "activity_rhythm_band_share",
            "activity_share",
            "rhythm_jitter",
            "phase_tolerance",
            "activity_confidence",
            "gait_phase_window",
            "gait_min_locking",
            "gait_silence_share",
            "gait_alternation_overlap",
            "gait_cocontraction_share",
            "gait_confidence",
            "cyclic_envelope_r",
            "cyclic_min_depth",
            "artifact_suspect_confidence",
            "electrode_line_share",
        ):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(
                    f"detector config key {name!r}: need 0 < value < 1, got {getattr(self, name)}"
                )
        # EMG internals
        for name in ("baseline_segment_s", "artefact_band_hz", "onset_backtrack_s", "settle_bad_s",
                     "rail_memory_s", "mains_detect_ratio", "movement_clonus_window_s"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"detector config key {name!r}: must be > 0, got {getattr(self, name)!r}")
        if self.baseline_provisional_s < 0:
            got = self.baseline_provisional_s
            raise ConfigError(f"detector config key 'baseline_provisional_s': must be >= 0, got {got!r}")
        for name in (
            "onset_back_fraction",
            "lead_off_hum_share",
            "lead_off_hum_drift",
            "clonus_min_coverage",
        ):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(
                    f"detector config key {name!r}: need 0 < value < 1, got {getattr(self, name)}"
                )
        for name in ("crackle_kurtosis", "crackle_window_s", "own_part_step_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"detector config key {name!r}: must be >= 0, got {getattr(self, name)!r}")
        if self.input_power_ratio < 0:
            raise ConfigError(
                f"detector config key 'input_power_ratio': must be >= 0, got {self.input_power_ratio!r}"
            )
        if self.electrode_hum_change <= 1:
            raise ConfigError(
                f"detector config key 'electrode_hum_change': must be > 1, got {self.electrode_hum_change!r}"
            )
        if not -1 <= self.clonus_min_periodicity < 1:
            raise ConfigError(
                "detector config key 'clonus_min_periodicity': need -1 <= value < 1, "
                f"got {self.clonus_min_periodicity}"
            )
        if not 0 < self.clonus_max_trough <= 1:
            raise ConfigError(
                f"detector config key 'clonus_max_trough': need 0 < value <= 1, got {self.clonus_max_trough}"
            )
        if not 0 < self.clonus_burst_low < self.clonus_burst_high < 1:
            raise ConfigError(
                "detector config keys 'clonus_burst_low'/'clonus_burst_high': need 0 < low < high < 1, "
                f"got {self.clonus_burst_low}/{self.clonus_burst_high}"
            )

    # --- rate-derived parameters (issue 11: 200-250 Hz wearables) ---------------------------
    def emg_band(self, rate_hz: float) -> tuple[float, float]:
        """The band-pass actually used at ``rate_hz``: the configured band, its top capped at 0.45 x
        the rate (Nyquist less the anti-alias roll-off), its bottom at half the top."""
        high = min(self.band_high_hz, 0.45 * rate_hz)
        return min(self.band_low_hz, 0.5 * high), high

    def envelope_averaging_s(self, env_rate_hz: float) -> float:
        """Effective averaging time of the power envelope's low-pass (2nd-order Butterworth):
        1 / (2 x its equivalent noise bandwidth), the ENBW being pi / (4 sin(pi/4)) x the cutoff."""
        cutoff = min(self.envelope_cutoff_hz, 0.4 * env_rate_hz)
        enbw = math.pi / (4.0 * math.sin(math.pi / 4.0)) * cutoff
        return 1.0 / (2.0 * enbw)

    def shape_smoothing_s(self, rate_hz: float, env_rate_hz: float, split_hz: float) -> float:
        """Extra smoothing of an episode's envelope before its shape is read (rise time, peak,
        clonus rhythm), so that its statistical stability does not depend on the sample rate.

        The envelope is the smoothed power of the band from ``split_hz`` to the band-pass top. For
        band-limited noise-like EMG, a power estimate over a bandwidth B and an averaging time T
        has about 2 B T degrees of freedom (its relative spread is ~1/sqrt(B T)). When the rate
        cuts the band (200 Hz: 45-90 Hz instead of 45-450 Hz, 1/9 of it), the envelope of one
        burst fluctuates ~3x more: noise peaks reach "80 % of the plateau" early (short rises),
        noise dips split one voluntary burst into "clonus" cycles, and the peak over rest grows.
        Averaging for ``T (B_configured / B_available - 1)`` more restores the configured band's
        B T. Zero whenever the configured band fits below 0.45 x the rate (>= 1000 Hz by default),
        so nothing changes there.
        """
        configured = self.band_high_hz - split_hz
        available = self.emg_band(rate_hz)[1] - split_hz
        if available >= configured or configured <= 0:
            return 0.0
        return self.envelope_averaging_s(env_rate_hz) * (configured / max(available, 1.0) - 1.0)

    def rhythm_smoothing_s(self, rate_hz: float, env_rate_hz: float, split_hz: float) -> float:
        """The part of ``shape_smoothing_s`` the clonus rhythm test may use: at most half the
        shortest clonus period (a moving average that long keeps >= 2/pi of an 8 Hz rhythm)."""
        return min(self.shape_smoothing_s(rate_hz, env_rate_hz, split_hz), 0.25 / self.clonus_max_hz)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "detector config", prefix: str = ""
    ) -> DetectorConfig:
        """Build from a mapping (a TOML ``[detector]`` section). Every error is one line naming
        ``source`` and the key, dotted with ``prefix``: ``gw.toml: detector.on_ratio: ...``."""
        if not isinstance(data, Mapping):
            where = f"{prefix.rstrip('.')}: " if prefix else ""
            raise ConfigError(f"{source}: {where}expected a table of settings, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        problems: list[str] = []  # every unknown key and bad value, one line each, not only the first
        for key, value in data.items():
            if key not in known:
                close = [k for k in sorted(known) if k.split("_")[0] == str(key).split("_")[0]]
                hint = f" (did you mean one of {close}?)" if close else ""
                shown = key if re.fullmatch(r"\w+", str(key), re.ASCII) else repr(key)  # one line, always
                problems.append(f"{source}: {prefix}{shown}: unknown key{hint}")
                continue
            try:
                kwargs[key] = _coerce(f"{source}: {prefix}{key}", value, hints[key])
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("\n".join(problems))
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {_keyed(str(exc), prefix, kwargs)}") from None

    @property
    def hash(self) -> str:
        """Short stable hash of every setting: events carry it so results can be traced to settings."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _keyed(msg: str, prefix: str, given: Iterable[str]) -> str:
    """A range check's ``detector config key(s) 'a'/'b': ...`` as ``{prefix}a: ...``: the dotted
    key first, the one the user set when the check names several."""
    m = re.match(r"detector config keys? ('\w+'(?:/'\w+')*)(: )?", msg)
    if m is None:
        return msg
    named = [k.strip("'") for k in m.group(1).split("/")]
    key = next((k for k in named if k in given), named[0])
    others = [k for k in named if k != key]
    rest = msg[m.end() :] if m.group(2) else msg.removeprefix("detector config keys ")
    with_ = f" (with {', '.join(prefix + k for k in others)})" if others and m.group(2) else ""
    return f"{prefix}{key}: {rest}{with_}"


def _coerce(where: str, value: Any, hint: Any) -> Any:
    """Check one TOML value against the field's type; ints are accepted where floats are expected.
    ``where`` is ``source: dotted.key``."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: must not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    if isinstance(value, bool):
        raise ConfigError(f"{where}: must be a number, got a boolean")
    if base is float and isinstance(value, int | float):
        return float(value)
    if base is int and isinstance(value, int):
        return value
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    want = "an integer" if base is int else "a number"
    raise ConfigError(f"{where}: must be {want}, got {value!r}")
