"""Tests of the durable spool: ordering, recovery, corruption, quota eviction, crashes, and a model check."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import ingest.outputs.spool as spool_mod
from ingest.outputs.spool import (
    MAGIC,
    RECORD_OVERHEAD,
    Priority,
    Spool,
    SpoolFullError,
    SpoolLockedError,
    SpoolRecord,
)

BIG = 1 << 30


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.ns


def payloads(records: list[SpoolRecord]) -> list[bytes]:
    return [r.payload for r in records]


def drain(sp: Spool, sink: str) -> list[SpoolRecord]:
    return sp.peek(sink, 10**9, BIG)


def segs(directory: Path, sink: str, prio: Priority) -> list[Path]:
    return sorted((directory / sink / f"p{int(prio)}").glob("*.seg"))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", quota_bytes=BIG, segment_bytes=256, fsync="never") as sp:
        yield sp


def test_peek_is_oldest_first_across_priorities_and_nondestructive(spool: Spool) -> None:
    prios = [Priority.RAW, Priority.CLINICAL, Priority.BULK, Priority.CLINICAL, Priority.RAW]
    for i, p in enumerate(prios):
        spool.append("mqtt", p, b"r%d" % i)
    spool.append("influx", Priority.BULK, b"other sink")
    got = spool.peek("mqtt", 10, BIG)
    assert payloads(got) == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    assert [r.priority for r in got] == prios
    assert [r.seq for r in got] == sorted(r.seq for r in got)
    assert payloads(spool.peek("mqtt", 10, BIG)) == payloads(got)  # peek does not consume
    assert payloads(spool.peek("mqtt", 2, BIG)) == [b"r0", b"r1"]
    assert payloads(spool.peek("mqtt", 10, 4)) == [b"r0", b"r1"]  # 2+2 bytes fit, the third does not
    assert payloads(drain(spool, "influx")) == [b"other sink"]
    assert spool.peek("nobody", 10, BIG) == []


def test_one_record_larger_than_max_bytes_is_still_returned(spool: Spool) -> None:
    spool.append("s", Priority.BULK, b"x" * 100)
    assert len(spool.peek("s", 10, 10)) == 1


def test_ack_removes_records_in_any_order_and_is_idempotent(spool: Spool) -> None:
    for i in range(30):  # several segments per stream at segment_bytes=256
        spool.append("s", Priority(i % 3), b"%03d" % i)
    recs = drain(spool, "s")
    spool.ack("s", [recs[5], recs[0], recs[29]])
    spool.ack("s", [recs[5]])  # again: harmless
    left = drain(spool, "s")
    assert payloads(left) == [b"%03d" % i for i in range(30) if i not in (0, 5, 29)]
    stats = spool.stats()
    assert stats.total_pending_records == 27
    assert stats.pending_bytes["s"][Priority.CLINICAL] == 3 * 9  # ten clinical, one acked
    spool.ack("s", left)
    assert drain(spool, "s") == []
    assert spool.stats().total_pending_records == 0


def test_ack_of_other_sinks_record_is_refused(spool: Spool) -> None:
    spool.append("a", Priority.BULK, b"x")
    rec = drain(spool, "a")
    with pytest.raises(ValueError, match="belongs to sink 'a'"):
        spool.ack("b", rec)


def test_fully_acked_segments_are_deleted(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    with Spool(d, quota_bytes=BIG, segment_bytes=100, fsync="never") as sp:
        for i in range(40):
            sp.append("s", Priority.BULK, b"%05d" % i)
        n_before = len(segs(d, "s", Priority.BULK))
        assert n_before >= 10
        bytes_before = sp.stats().bytes
        sp.ack("s", drain(sp, "s")[:35])
        after = segs(d, "s", Priority.BULK)
        assert len(after) <= 3
        assert sp.stats().bytes == sum(p.stat().st_size for p in after) < bytes_before
        assert payloads(drain(sp, "s")) == [b"%05d" % i for i in range(35, 40)]


def test_reopen_restores_exactly_the_unacked_records(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    with Spool(d, quota_bytes=BIG, segment_bytes=128, fsync="batch") as sp:
        for i in range(50):
            sp.append("s", Priority(i % 3), b"rec%d" % i)
            sp.append("t", Priority.CLINICAL, b"t%d" % i)
        recs = drain(sp, "s")
        acked = recs[:10] + recs[20:23] + [recs[40]]
        sp.ack("s", acked)
        sp.ack("t", drain(sp, "t")[:49])
        expected_s = payloads([r for r in recs if r not in acked])
    with Spool(d, quota_bytes=BIG, segment_bytes=128) as sp:
        assert payloads(drain(sp, "s")) == expected_s
        assert payloads(drain(sp, "t")) == [b"t49"]
        assert sp.stats().pending_records["s"][Priority.BULK] == sum(
            1 for i in range(50) if i % 3 == 1 and b"rec%d" % i in expected_s
        )
        # appends after reopen continue the order
        sp.append("s", Priority.CLINICAL, b"new")
        assert payloads(drain(sp, "s"))[-1] == b"new"
        assert drain(sp, "s")[-1].seq > max(r.seq for r in recs)


def test_second_open_of_same_directory_is_refused(tmp_path: Path) -> None:
    with (
        Spool(tmp_path, quota_bytes=BIG, fsync="never"),
        pytest.raises(SpoolLockedError, match=str(tmp_path)),
    ):
        Spool(tmp_path, quota_bytes=BIG).open()


def test_invalid_sink_name_is_refused(spool: Spool) -> None:
    with pytest.raises(ValueError, match=r"'\.\./x'"):
        spool.append("../x", Priority.BULK, b"")


def _write_some(d: Path, n: int) -> None:
    with Spool(d, quota_bytes=BIG, segment_bytes=10_000, fsync="always") as sp:
        for i in range(n):
            sp.append("s", Priority.CLINICAL, b"payload-%03d" % i)


def test_torn_tail_is_cut_counted_and_the_prefix_survives(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    _write_some(d, 10)
    (seg,) = segs(d, "s", Priority.CLINICAL)
    rec_size = RECORD_OVERHEAD + len(b"payload-000")
    full = seg.stat().st_size
    assert full == len(MAGIC) + 10 * rec_size
    with open(seg, "r+b") as f:  # a crash in the middle of writing the last record
        f.truncate(full - 5)
    with Spool(d, quota_bytes=BIG, segment_bytes=10_000) as sp:
        assert payloads(drain(sp, "s")) == [b"payload-%03d" % i for i in range(9)]
        st = sp.stats()
        assert (st.corrupt_records, st.corrupt_bytes) == (1, rec_size - 5)
        assert seg.stat().st_size == full - rec_size  # the torn tail is gone from disk
        sp.append("s", Priority.CLINICAL, b"after")
    with Spool(d, quota_bytes=BIG, segment_bytes=10_000) as sp:
        assert sp.stats().corrupt_records == 0  # cut once, not counted again
        assert payloads(drain(sp, "s"))[-2:] == [b"payload-008", b"after"]


def test_flipped_byte_mid_segment_loses_only_that_record(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    _write_some(d, 10)
    (seg,) = segs(d, "s", Priority.CLINICAL)
    rec_size = RECORD_OVERHEAD + len(b"payload-000")
    data = bytearray(seg.read_bytes())
    data[len(MAGIC) + 4 * rec_size + RECORD_OVERHEAD + 3] ^= 0x40  # inside record 4's payload
    seg.write_bytes(bytes(data))
    with Spool(d, quota_bytes=BIG, segment_bytes=10_000) as sp:
        got = drain(sp, "s")
        assert payloads(got) == [b"payload-%03d" % i for i in range(10) if i != 4]
        st = sp.stats()
        assert (st.corrupt_records, st.corrupt_bytes) == (1, rec_size)
        sp.ack("s", got)  # acking across the skipped region works
        assert drain(sp, "s") == []


def test_flipped_byte_in_last_record_is_a_tail(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    _write_some(d, 3)
    (seg,) = segs(d, "s", Priority.CLINICAL)
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    with Spool(d, quota_bytes=BIG, segment_bytes=10_000) as sp:
        assert payloads(drain(sp, "s")) == [b"payload-000", b"payload-001"]
        assert sp.stats().corrupt_records == 1


def test_garbage_cursor_file_means_redelivery_not_loss(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    _write_some(d, 3)
    with Spool(d, quota_bytes=BIG) as sp:
        sp.ack("s", drain(sp, "s")[:1])
    (d / "cursor.json").write_bytes(b"\x00garbage")
    with Spool(d, quota_bytes=BIG) as sp:
        assert len(drain(sp, "s")) == 3
        assert sp.stats().corrupt_records == 1


RECORD = b"p" * (100 - RECORD_OVERHEAD)  # 100 bytes per record on disk
SEG_BYTES = len(MAGIC) + 5 * 100  # five records per segment


def test_quota_evicts_raw_then_bulk_then_clinical_and_counts(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    clock = FakeClock()
    quota = 6 * SEG_BYTES
    with Spool(d, quota_bytes=quota, segment_bytes=SEG_BYTES, fsync="never", clock_ns=clock) as sp:
        for prio in (Priority.CLINICAL, Priority.RAW, Priority.BULK):
            for _ in range(10):  # two full segments per class: the quota is exactly full
                clock.ns += 1
                assert sp.append("s", prio, RECORD)
        assert sp.stats().bytes == quota
        # one more clinical record: the oldest RAW segment goes, not older clinical or bulk data
        assert sp.append("s", Priority.CLINICAL, RECORD)
        st = sp.stats()
        assert st.evicted_records == {Priority.CLINICAL: 0, Priority.BULK: 0, Priority.RAW: 5}
        assert st.evicted_bytes == {Priority.CLINICAL: 0, Priority.BULK: 0, Priority.RAW: 5 * len(RECORD)}
        assert st.pending_records["s"] == {Priority.CLINICAL: 11, Priority.BULK: 10, Priority.RAW: 5}
        # keep appending clinical data until clinical data itself has to go
        steps = 0
        while sp.stats().evicted_records[Priority.CLINICAL] == 0:
            before = sp.stats()
            clock.ns += 1
            assert sp.append("s", Priority.CLINICAL, RECORD)
            after = sp.stats()
            assert after.bytes <= quota
            if after.evicted_records[Priority.BULK] > before.evicted_records[Priority.BULK]:
                assert before.pending_records["s"][Priority.RAW] == 0
            if after.evicted_records[Priority.CLINICAL] > 0:
                assert before.pending_records["s"][Priority.RAW] == 0
                assert before.pending_records["s"][Priority.BULK] == 0
            steps += 1
            assert steps < 100
        st = sp.stats()
        assert st.evicted_records == {Priority.CLINICAL: 5, Priority.BULK: 10, Priority.RAW: 10}
        remaining = drain(sp, "s")
        assert all(r.priority == Priority.CLINICAL for r in remaining)
        assert len(remaining) == 11 + steps - 5
        assert remaining[-1].seq == max(r.seq for r in remaining)  # the newest data is kept
        counts = (dict(st.evicted_records), dict(st.evicted_bytes))
    with Spool(d, quota_bytes=quota, segment_bytes=SEG_BYTES) as sp:  # counters survive a restart
        st = sp.stats()
        assert (st.evicted_records, st.evicted_bytes) == counts


def test_bulk_and_raw_never_push_out_clinical_data(tmp_path: Path) -> None:
    with Spool(tmp_path, quota_bytes=2 * SEG_BYTES, segment_bytes=SEG_BYTES, fsync="never") as sp:
        for _ in range(10):
            assert sp.append("s", Priority.CLINICAL, RECORD)
        assert not sp.append("s", Priority.RAW, RECORD)
        assert not sp.append("s", Priority.BULK, RECORD)
        assert not sp.append("s", Priority.BULK, RECORD)
        st = sp.stats()
        assert st.rejected_records == {Priority.CLINICAL: 0, Priority.BULK: 2, Priority.RAW: 1}
        assert st.evicted_records == {Priority.CLINICAL: 0, Priority.BULK: 0, Priority.RAW: 0}
        assert st.pending_records["s"][Priority.CLINICAL] == 10
        # once clinical data is delivered there is room again
        sp.ack("s", drain(sp, "s"))
        assert sp.append("s", Priority.RAW, RECORD)


def test_acked_segments_are_reclaimed_before_anything_is_evicted(tmp_path: Path) -> None:
    payload = RECORD
    with Spool(tmp_path, quota_bytes=2 * SEG_BYTES, segment_bytes=SEG_BYTES, fsync="never") as sp:
        for _ in range(5):
            sp.append("s", Priority.RAW, payload)
        sp.ack("s", drain(sp, "s"))  # acked but the segment is still the active one
        for _ in range(9):
            sp.append("s", Priority.RAW, payload)
        st = sp.stats()
        assert st.evicted_records[Priority.RAW] == 0
        assert st.pending_records["s"][Priority.RAW] == 9


def test_enospc_raises_spoolfullerror_and_leaves_state_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "sp"
    with Spool(d, quota_bytes=BIG, segment_bytes=10_000, fsync="never") as sp:
        sp.append("s", Priority.CLINICAL, b"before")

        def half_then_full(fd: int, data: bytes | memoryview) -> int:
            if len(data) > 4:  # a short write first, as a filling disk does
                return os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(spool_mod, "_os_write", half_then_full)
        with pytest.raises(SpoolFullError, match=str(d)):
            sp.append("s", Priority.CLINICAL, b"during the outage")
        monkeypatch.undo()
        sp.append("s", Priority.CLINICAL, b"after")
        assert payloads(drain(sp, "s")) == [b"before", b"after"]
    with Spool(d, quota_bytes=BIG, segment_bytes=10_000) as sp:
        assert payloads(drain(sp, "s")) == [b"before", b"after"]
        assert sp.stats().corrupt_records == 0


def test_oldest_age_uses_the_append_time(tmp_path: Path) -> None:
    clock = FakeClock()
    with Spool(tmp_path, quota_bytes=BIG, fsync="never", clock_ns=clock) as sp:
        sp.append("s", Priority.BULK, b"a")
        clock.ns += 5 * 10**9
        sp.append("s", Priority.CLINICAL, b"b")
        clock.ns += 2 * 10**9
        assert sp.stats().oldest_age_s == {"s": 7.0}
        sp.ack("s", drain(sp, "s")[:1])
        assert sp.stats().oldest_age_s == {"s": 2.0}
        assert sp.stats().oldest_age_max_s == 2.0


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ingest.outputs.spool import Priority, Spool

    d, policy = Path(sys.argv[1]), sys.argv[2]
    with Spool(d, quota_bytes=1 << 30, segment_bytes=4096, fsync=policy) as sp:
        i = 0
        while True:
            sp.append("s", Priority(i % 3), b"seq=%08d;" % i + bytes([i % 251]) * (i % 97))
            if policy == "always":  # durable as soon as append returns
                print("A", i, flush=True)
            elif i % 10 == 9:  # batch: durable after the next sync
                sp.sync()
                print("A", *range(i - 9, i + 1), flush=True)
            if i % 10 == 9:
                recs = sp.peek("s", 5, 1 << 20)
                print("P", " ".join(r.payload[4:12].decode() for r in recs), flush=True)
                sp.ack("s", recs)
                if policy != "always":
                    sp.sync()
                print("K", " ".join(r.payload[4:12].decode() for r in recs), flush=True)
            i += 1
    """
)


@pytest.mark.parametrize("policy", ["always", "batch"])
def test_kill_9_loses_nothing_that_was_reported_synced(tmp_path: Path, policy: str) -> None:
    d = tmp_path / "sp"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(d), policy], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    appended: list[int] = []
    acking: set[int] = set()  # the child was about to ack these: they may be gone, or not
    acked: set[int] = set()  # acked and synced: must not come back
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("A") and len(lines) > 200:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lines += proc.stdout.read().splitlines(keepends=True)  # what it printed before it died
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    for line in lines:
        if not line.endswith("\n"):
            continue  # cut off by the kill
        kind, *rest = line.split()
        assert kind in ("A", "P", "K"), line
        if kind == "A":
            appended.extend(int(x) for x in rest)
        elif kind == "P":
            acking.update(int(x) for x in rest)
        else:
            acked.update(int(x) for x in rest)
    with Spool(d, quota_bytes=1 << 30, segment_bytes=4096) as sp:
        got = drain(sp, "s")
    seqs = [int(r.payload[4:12]) for r in got]
    assert seqs == sorted(seqs)  # in order
    assert len(set(seqs)) == len(seqs)
    for r, i in zip(got, seqs, strict=True):  # none corrupted
        assert r.payload == b"seq=%08d;" % i + bytes([i % 251]) * (i % 97)
        assert r.priority == Priority(i % 3)
    present = set(seqs)
    assert present and acked  # the run got far enough to mean something
    assert not (acked & present)  # acks reported synced are not re-delivered
    missing = [i for i in appended if i not in acking and i not in present]
    assert missing == []


class SpoolModel(RuleBasedStateMachine):
    """Random interleavings of append/peek/ack/reopen against a list-of-pending-records model."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self._tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self._tmp.name)
        self.sp = self._new()
        self.sp.open()
        self.model: dict[str, list[tuple[bytes, Priority]]] = {"a": [], "b": []}
        #: what the last sync/close made durable as "not yet acknowledged" (a superset of the model)
        self.durable: dict[str, list[tuple[bytes, Priority]]] = {"a": [], "b": []}
        self.last_peek: dict[str, list[SpoolRecord]] = {"a": [], "b": []}
        self.counter = 0

    def _new(self) -> Spool:
        # cursor written only on sync/close, so a crash has a well-defined set of forgotten acks
        return Spool(self.dir, quota_bytes=BIG, segment_bytes=160, fsync="never", fsync_interval_s=1e9)

    @rule(sink=st.sampled_from(["a", "b"]), prio=st.sampled_from(list(Priority)), size=st.integers(0, 60))
    def append(self, sink: str, prio: Priority, size: int) -> None:
        payload = (b"%d:" % self.counter + b"z" * size)[: max(size, len(b"%d:" % self.counter))]
        self.counter += 1
        assert self.sp.append(sink, prio, payload)
        self.model[sink].append((payload, prio))
        self.durable[sink].append((payload, prio))  # a process crash keeps what write(2) was given

    @rule(sink=st.sampled_from(["a", "b"]), n=st.integers(1, 12), max_bytes=st.integers(1, 400))
    def peek(self, sink: str, n: int, max_bytes: int) -> None:
        got = self.sp.peek(sink, n, max_bytes)
        expect: list[tuple[bytes, Priority]] = []
        total = 0
        for payload, prio in self.model[sink]:
            if len(expect) >= n or (expect and total + len(payload) > max_bytes):
                break
            expect.append((payload, prio))
            total += len(payload)
        assert [(r.payload, r.priority) for r in got] == expect
        self.last_peek[sink] = got

    @precondition(lambda self: any(self.last_peek.values()))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        sink = data.draw(st.sampled_from([s for s, recs in self.last_peek.items() if recs]))
        recs = self.last_peek[sink]
        # explicit patterns, because plain random subsets shrink towards "ack nothing" and rarely
        # leave the out-of-order acks that the cursor file must carry across a reopen
        pattern = data.draw(st.sampled_from(["all", "first", "odd", "even", "last", "subset"]))
        if pattern == "subset":
            keep = data.draw(st.lists(st.booleans(), min_size=len(recs), max_size=len(recs)))
        else:
            keep = [
                {
                    "all": True,
                    "first": i == 0,
                    "odd": i % 2 == 1,
                    "even": i % 2 == 0,
                    "last": i == len(recs) - 1,
                }[pattern]
                for i in range(len(recs))
            ]
        chosen = [r for r, k in zip(recs, keep, strict=True) if k]
        self.sp.ack(sink, chosen)
        gone = {r.payload for r in chosen}
        self.model[sink] = [m for m in self.model[sink] if m[0] not in gone]
        self.last_peek[sink] = [r for r in recs if r.payload not in gone]

    @rule(action=st.integers(0, 7))
    def lifecycle(self, action: int) -> None:
        """Reopen, crash or sync now and then (one rule with an argument: hypothesis favours argument-free
        rules, and a machine that mostly reopens empty spools tests little)."""
        if action == 7:
            self.reopen()
        elif action == 6:
            self.crash()
        elif action == 5:
            self.sync()

    def reopen(self) -> None:
        self.sp.close()
        self.sp = self._new()
        self.sp.open()
        self.durable = {k: list(v) for k, v in self.model.items()}
        self.last_peek = {"a": [], "b": []}  # positions stay valid, but keep the model simple

    def sync(self) -> None:
        self.sp.sync()
        self.durable = {k: list(v) for k, v in self.model.items()}

    def crash(self) -> None:
        """Like kill -9: descriptors dropped, nothing flushed; acks since the last sync may come back."""
        self.sp._release()
        self.sp = self._new()
        self.sp.open()
        for sink in ("a", "b"):
            got = [(r.payload, r.priority) for r in drain(self.sp, sink)]
            assert set(self.model[sink]) <= set(got) <= set(self.durable[sink])  # nothing lost
            assert got == [m for m in self.durable[sink] if m in set(got)]  # order kept
            self.model[sink] = got
        self.durable = {k: list(v) for k, v in self.model.items()}
        self.last_peek = {"a": [], "b": []}

    @invariant()
    def pending_counts_match(self) -> None:
        stats = self.sp.stats()
        for sink, items in self.model.items():
            for prio in Priority:
                want = sum(1 for _, p in items if p == prio)
                assert stats.pending_records.get(sink, {}).get(prio, 0) == want

    def teardown(self) -> None:
        self.sp.close()
        self._tmp.cleanup()


TestSpoolModel = SpoolModel.TestCase
TestSpoolModel.settings = settings(
    max_examples=50, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
