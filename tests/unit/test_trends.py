"""Trends and notices over real stored rows (the ward-day dataset through SqliteSink)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support import history_data as hd

from dashboard.analysis.notices import NoticeRules, evaluate
from dashboard.analysis.trends import DURATION_BINS_S, TrendConfig, compute_trends, is_night
from dashboard.history.base import EventRow
from dashboard.history.sqlite import SqliteHistory
from dashboard.reviews import ReviewStore
from ingest.outputs.sinks.sqlite import SQLITE_FILENAME, SqliteSink

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[hd.Dataset, SqliteHistory, Path]]:
    ds = hd.build()
    tmp = tmp_path_factory.mktemp("trends")

    async def load() -> None:
        async with SqliteSink(tmp / SQLITE_FILENAME) as sink:
            await sink.send(ds.records)

    asyncio.run(load())
    with SqliteHistory(tmp / SQLITE_FILENAME) as h:
        yield ds, h, tmp


def test_trends_count_by_type_local_hour_day_and_night_with_reviews_applied(store: tuple) -> None:
    _ds, history, tmp = store
    events = history.events(hd.DEVICE, hd.T0, hd.T0 + timedelta(hours=4))
    with ReviewStore(tmp / "reviews.sqlite") as rs:
        rs.review(events[0].id, "not_spasm", reviewer="dr-a")
        rs.review(events[7].id, "not_spasm", reviewer="dr-a")
        rs.review(events[2].id, "unsure", reviewer="dr-a")
        rs.review(events[4].id, "confirmed", reviewer="dr-a")
        verdicts = rs.verdicts(e.id for e in events)
    cfg = TrendConfig(tz="Europe/Berlin")  # UTC+1 in winter: T0 20:00Z is 21:00 local
    start, end = hd.T0, hd.T0 + timedelta(hours=4)
    tr = compute_trends(history, hd.DEVICE, start, end, verdicts=verdicts, config=cfg)
    counted = [e for i, e in enumerate(events) if i not in (0, 7, 2)]
    assert tr.excluded == 2 and tr.unsure == 1 and tr.confirmed == 1
    assert tr.unreviewed == len(events) - 4 and tr.patient == hd.PATIENT
    assert tr.totals == {
        t: sum(e.type == t for e in counted) for t in ("twitch", "phasic", "tonic", "clonus", "tremor")
    }
    # Local hours 21, 22, 23, 00 (Berlin) and the counts in each, by the event's own local hour.
    assert [h.start.astimezone(BERLIN).hour for h in tr.hours] == [21, 22, 23, 0]
    by_hour = Counter(e.onset.astimezone(BERLIN).hour for e in counted)
    assert [h.total for h in tr.hours] == [by_hour[h] for h in (21, 22, 23, 0)]
    assert sum(h.unsure for h in tr.hours) == 1 and sum(h.excluded for h in tr.hours) == 2
    # Night from 22:00 local: everything after 21:00Z.
    night = sum(e.onset >= hd.T0 + timedelta(hours=1) for e in counted)
    assert tr.day_night["night"]["count"] == night and tr.day_night["day"]["count"] == len(counted) - night
    assert [d.date for d in tr.days] == [date(2026, 11, 30), date(2026, 12, 1)]
    assert tr.days[0].total == len(counted) and tr.days[1].total == 0
    assert tr.days[0].night_count == night
    # Monitored time: the hour coverage rows added up; the 4th hour has no data at all.
    cov = history.coverage(hd.DEVICE, start, end, 3600)
    assert tr.monitored_s == pytest.approx(sum(c.monitored_s for c in cov))
    assert tr.hours[3].monitored_s == 0.0 and tr.hours[0].monitored_s == pytest.approx(cov[0].monitored_s)
    assert tr.day_night["day"]["monitored_s"] == pytest.approx(cov[0].monitored_s)
    rate = tr.day_night["night"]["per_monitored_hour"]
    assert rate == pytest.approx(night / (sum(c.monitored_s for c in cov[1:]) / 3600))
    assert 0 < tr.coverage_fraction < 0.75
    # Distributions over counted events only.
    for t, hist in tr.durations.items():
        assert sum(hist) == tr.totals[t] and len(hist) == len(DURATION_BINS_S) - 1
    tonic = sorted(e.duration_s for e in counted if e.type == "tonic")
    mid = len(tonic) // 2
    median = tonic[mid] if len(tonic) % 2 else (tonic[mid - 1] + tonic[mid]) / 2
    assert tr.duration_median_s["tonic"] == pytest.approx(median)
    clonus = [e.frequency_hz for e in counted if e.type == "clonus"]
    assert sum(tr.clonus_frequency) == len(clonus) > 0
    assert tr.activity_s == {"walking": 120.0, "transfer": 15.5, "rest": 900.0}
    assert tr.gaps_by_cause["disconnect"] == {"count": 2.0, "seconds": 412.5}
    doc = json.loads(json.dumps(tr.to_json()))
    assert doc["total"] == len(counted) and doc["config"]["night_start"] == "22:00:00"
    assert doc["duration_bins_s"][-1] is None  # infinity as null


def test_local_days_and_hours_follow_daylight_saving_time(store: tuple) -> None:
    _ds, history, _ = store
    cfg = TrendConfig(tz="Europe/Berlin")
    # 25 October 2026: clocks go back at 03:00 local, the day has 25 hours.
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 local (CEST)
    end = datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # 00:00 local (CET) the next day
    tr = compute_trends(history, hd.DEVICE, start, end, config=cfg)
    assert [d.date for d in tr.days] == [date(2026, 10, 25)]
    assert len(tr.hours) == 25 and [h.start.astimezone(BERLIN).hour for h in tr.hours].count(2) == 2
    assert tr.total == 0 and tr.monitored_s == 0.0


def test_night_window_may_wrap_midnight_or_not() -> None:
    t = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # 23:30 in Berlin (CEST)
    assert is_night(t, TrendConfig(tz="Europe/Berlin"))
    assert not is_night(t, TrendConfig())  # 21:30 UTC
    assert is_night(t, TrendConfig(night_start=time(1, 0), night_end=time(23, 0)))
    assert not is_night(t, TrendConfig(tz="Europe/Berlin", night_start=time(1, 0), night_end=time(6, 0)))


def test_trends_are_the_same_for_one_day_on_the_events_of_both_hours(store: tuple) -> None:
    _ds, history, _ = store
    whole = compute_trends(history, hd.DEVICE, hd.T0, hd.T0 + timedelta(hours=3))
    parts = [
        compute_trends(history, hd.DEVICE, hd.T0 + timedelta(hours=h), hd.T0 + timedelta(hours=h + 1))
        for h in range(3)
    ]
    assert whole.total == sum(p.total for p in parts)
    assert whole.monitored_s == pytest.approx(sum(p.monitored_s for p in parts))


def _ev(i: int, onset: datetime, typ: str = "phasic", dur: float = 1.0) -> EventRow:
    return EventRow(f"e-{i}", "d", "p", typ, "ch1", onset, onset + timedelta(seconds=dur), dur,
                    100.0, 30.0, 5.0, None, 0.9)  # fmt: skip


def test_notices_inactive_tonic_and_rate_rules(store: tuple) -> None:
    _ds, history, _ = store
    start, end = hd.T0, hd.T0 + timedelta(hours=hd.HOURS)
    health = history.health(hd.DEVICE, start, end)
    rules = NoticeRules(inactive_minutes=10, tonic_longer_than_s=20, spasms_per_hour_above=None)
    events = history.events(hd.DEVICE, start, end)
    last = health[-1].at
    got = evaluate(rules, device=hd.DEVICE, patient=hd.PATIENT, start=start, now=last, events=events,
                   health=health)  # fmt: skip
    inactive = [n for n in got if n.rule == "inactive"]
    assert len(inactive) == 1 and inactive[0].value == 30.0 and not inactive[0].ongoing
    assert inactive[0].at == hd.NOT_MONITORING[0] - timedelta(seconds=7) + timedelta(minutes=10)
    long_tonic = [e for e in events if e.type == "tonic" and e.duration_s > 20]
    assert [n.key for n in got if n.rule == "tonic_long"] == [e.id for e in long_tonic] and long_tonic
    # Reviewed not_spasm: no notice. Same rows again: the same ids.
    again = evaluate(rules, device=hd.DEVICE, patient=hd.PATIENT, start=start, now=last, events=events,
                     health=health, verdicts={long_tonic[0].id: "not_spasm"})  # fmt: skip
    assert {n.id for n in again} == {n.id for n in got} - {n.id for n in got if n.key == long_tonic[0].id}
    # Still inactive 25 minutes after the last status: an ongoing notice.
    now = last + timedelta(minutes=25)
    later = evaluate(rules, device=hd.DEVICE, patient=hd.PATIENT, start=start, now=now, health=health)
    assert [n.ongoing for n in later if n.rule == "inactive"] == [False, True]
    assert "still inactive" in later[-1].text
    # No status at all is inactivity; health not given is not judged.
    assert [n.rule for n in evaluate(rules, device="x", patient="p", start=start, now=end, health=[])] == [
        "inactive"
    ]
    assert evaluate(rules, device="x", patient="p", start=start, now=end) == []


def test_rate_rule_counts_per_clock_hour_and_skips_unsure_and_not_spasm() -> None:
    h0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    evs = [_ev(i, h0 + timedelta(minutes=5 * i)) for i in range(14)]  # 12 in 08:xx, 2 in 09:xx
    rules = NoticeRules(inactive_minutes=None, tonic_longer_than_s=None, spasms_per_hour_above=10)
    got = evaluate(rules, device="d", patient="p", start=h0, now=h0 + timedelta(hours=2), events=evs)
    assert [(n.rule, n.value, n.at) for n in got] == [("rate", 12.0, evs[10].onset)]
    assert (
        "12 spasms between 09:00 and 10:00"
        in evaluate(
            rules,
            device="d",
            patient="p",
            start=h0,
            now=h0 + timedelta(hours=2),
            events=evs,
            tz="Europe/Berlin",
        )[0].text
    )
    fewer = evaluate(rules, device="d", patient="p", start=h0, now=h0 + timedelta(hours=2), events=evs,
                     verdicts={"e-1": "not_spasm", "e-2": "unsure"})  # fmt: skip
    assert fewer == []


def test_notice_rules_from_config_refuse_unknown_keys_and_bad_values() -> None:
    assert (
        NoticeRules.from_dict({"inactive_minutes": 5, "spasms_per_hour_above": 12.0}).spasms_per_hour_above
        == 12
    )
    with pytest.raises(ValueError, match=r"\[notices\]: unknown key 'tonic_s'"):
        NoticeRules.from_dict({"tonic_s": 5})
    with pytest.raises(ValueError, match=r"tonic_longer_than_s: must be a positive number"):
        NoticeRules.from_dict({"tonic_longer_than_s": -1})
