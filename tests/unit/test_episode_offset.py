"""When an episode ends: back at the channel's rest, not at a share of its strongest moment, and a
clonus goes on while its beats do (``active_level``, ``clonus_beat_gap``, ``off_peak_memory_s``).

One spasm must be one event while the EMG is plainly active (a clonus whose middle beats are weak,
a tonic contraction after a strong surge), and two spasms separated by rest must stay two.
"""

from __future__ import annotations

import pytest
from test_detector import Sig, events, make, run

RATE = 2000.0


def _types(s: Sig, **cfg: object) -> list[tuple[str, float, float]]:
    return [
        (e.type, round(e.onset_sample / RATE, 1), round(e.offset_sample / RATE, 1))
        for e in events(run(make(RATE, **cfg), s.emg()))
    ]


def test_a_clonus_with_weak_beats_in_its_middle_is_one_event() -> None:
    # 5 Hz clonus, rest 3 uV (onset ~24 uV, offset ~6 uV, "still active" ~12 uV): four strong
    # beats, four weak ones (12 uV over rest: 5x rest, under the onset level, each above the
    # offset level for less than ``quiet_blip_s``) and four strong again. The weak beats used to
    # count as flickers of rest, and 0.5 s of "quiet" closed the episode in the middle.
    s = Sig(RATE, 12.0)
    s.clonus(3.0, 5.0, 4, 150.0)
    s.clonus(3.8, 5.0, 4, 12.0)
    s.clonus(4.6, 5.0, 4, 150.0)
    evs = _types(s)
    assert len(evs) == 1
    assert evs[0][1] == pytest.approx(3.0, abs=0.1) and evs[0][2] == pytest.approx(5.3, abs=0.2)
    # (typed phasic: the typing counts beats above half the run's height, and the weak stretch
    # breaks the regular run; a known limit, docs/detector.md)
    # the rule off (the old flicker rule): split in two clonus events
    assert [t for t, _, _ in _types(s, active_level=1.0)] == ["clonus", "clonus"]


def test_a_tonic_plateau_after_a_strong_surge_is_one_event() -> None:
    # A surge to 1500 uV (500x rest), 3 s at 100 uV, then 12 s at 40 uV (13x rest: plainly
    # contracting, 5x the onset level... of rest). 5 % of the surge (75 uV) lies above the
    # second plateau: judged against the surge it "ended" and came back at once as a new event.
    s = Sig(RATE, 24.0)
    s.burst(2.0, 1.0, 1500.0, rise_s=0.05)
    s.burst(2.9, 3.1, 100.0, rise_s=0.05)
    s.burst(5.9, 12.0, 40.0, rise_s=0.05)
    evs = _types(s)
    assert [t for t, _, _ in evs] == ["tonic"]
    assert evs[0][1] == pytest.approx(2.0, abs=0.1) and evs[0][2] == pytest.approx(17.9, abs=0.2)
    # a peak that never fades (the old rule) used to split it where the 40 uV plateau starts; the
    # quiet run there is "quiet" only against the surge (every row above the onset level), so the
    # episode re-anchors its offset level on the plateau and stays one
    evs = _types(s, off_peak_memory_s=1e6)
    assert [t for t, _, _ in evs] == ["tonic"]
    assert evs[0][2] == pytest.approx(17.9, abs=0.2)


def test_a_strong_burst_fused_into_a_tonic_spasm_does_not_split_it() -> None:
    # An 18 s tonic spasm at 40 uV (13x rest) with a 1.4 mV voluntary burst fused into it at 8 s
    # (a reach during the spasm: seen on the unseen voluntary recordings, seed 2000). After the
    # burst, 5 % of its peak fades over ``off_peak_memory_s``; 0.5 s of rows below that share,
    # though all above the onset level, used to close the spasm and open a second one at once.
    s = Sig(RATE, 24.0)
    s.burst(2.0, 18.0, 40.0, rise_s=0.05)
    s.burst(8.0, 0.6, 1500.0, rise_s=0.05)
    evs = _types(s)
    assert [t for t, _, _ in evs] == ["tonic"]
    assert evs[0][1] == pytest.approx(2.0, abs=0.1) and evs[0][2] == pytest.approx(20.0, abs=0.3)
    # and a burst that ends at rest still ends the episode at its tail
    s = Sig(RATE, 24.0)
    s.burst(2.0, 0.6, 1500.0, rise_s=0.05)
    s.burst(5.0, 0.8, 60.0)
    assert [t for t, _, _ in _types(s)] == ["phasic", "phasic"]


def test_two_spasms_a_second_apart_stay_two_events() -> None:
    # two phasic spasms with 1 s of rest between, and two clonus runs 1.5 s apart (the gap is
    # over seven of its periods, with no beat in it): each is its own event
    s = Sig(RATE, 16.0)
    s.burst(2.0, 0.8, 150.0)
    s.burst(3.8, 0.8, 150.0)
    s.clonus(7.0, 5.0, 5, 150.0)
    s.clonus(9.5, 5.0, 5, 150.0)
    evs = _types(s)
    assert [t for t, _, _ in evs] == ["phasic", "phasic", "clonus", "clonus"]
    assert [on for _, on, _ in evs] == pytest.approx([2.0, 3.8, 7.0, 9.5], abs=0.1)
    # a strong twitch and a weak phasic 1.2 s later: the tail rule still ends the first at its tail
    s = Sig(RATE, 10.0)
    s.burst(2.0, 0.3, 1500.0)
    s.burst(3.5, 0.8, 60.0)
    assert [t for t, _, _ in _types(s)] == ["twitch", "phasic"]
