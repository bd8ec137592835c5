"""Durable, crash-safe on-disk spool between the pipeline and its sinks.

Why it exists: events are clinical data. When the broker or the database is down or slow, the
pipeline keeps appending here and drains oldest-first once the sink is back, so a spasm detected at
3 a.m. during a broker restart still reaches the clinician, and a ``kill -9`` of the gateway loses
nothing that ``append`` had returned for. The pipeline owns the spool; sinks only write and raise.

Layout under ``directory`` (full description, guarantees and measured costs: ``docs/spool.md``)::

    .lock                       flock(2) held while open: one process per spool directory
    cursor.json                 read positions, out-of-order acks, persistent eviction counters
    <sink>/p<priority>/<first_seq:020d>.seg    append-only segments, one stream per (sink, priority)

A segment starts with the 8-byte magic ``NSSPOOL1`` followed by records::

    u32 length      payload length in bytes
    u32 crc32       zlib CRC-32 of everything after this field (priority, seq, time, payload)
    u8  priority    Priority value; must match the stream the segment belongs to
    u64 seq         per-sink append sequence (orders records of one sink across priorities)
    u64 append_ns   wall-clock time of the append (UTC ns), for the "oldest age" health figure
    payload

all little-endian. One stream per (sink, priority) is what makes eviction by priority possible
without rewriting files: the quota drops whole segments of the least important class first.

Delivery is at-least-once: ``peek`` is non-destructive and returns the oldest unacknowledged
records; ``ack`` marks them delivered. Acks are persisted (``cursor.json``, written atomically) per
the fsync policy, so after a crash some records acknowledged just before it may be delivered again.
Consumers deduplicate by event id.

Every append reaches the kernel with one ``write(2)`` before ``append`` returns, so a process crash
(``kill -9``, OOM kill) never loses an appended record whatever the fsync policy; the policy only
matters for power loss / kernel crash. Not thread-safe: use it from one thread (the asyncio loop);
the calls are short blocking syscalls, except an ``fsync`` with ``fsync="always"`` (about a
millisecond or more on flash, see docs/spool.md).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from heapq import merge
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

log = logging.getLogger(__name__)

__all__ = [
    "Priority",
    "Spool",
    "SpoolCorruptError",
    "SpoolError",
    "SpoolFullError",
    "SpoolLockedError",
    "SpoolRecord",
    "SpoolStats",
]

MAGIC = b"NSSPOOL1"
RECORD_HEADER = struct.Struct("<IIBQQ")
#: Bytes of the record header, counted against the quota like the payload.
RECORD_OVERHEAD = RECORD_HEADER.size
_CRC_FROM = 8  # the CRC covers the record from the priority byte on
CURSOR_FILE = "cursor.json"
LOCK_FILE = ".lock"
CURSOR_VERSION = 1
_SINK_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_SEG_RE = re.compile(r"^(\d{20})\.seg$")
_READ_CHUNK = 256 * 1024
#: During recovery a candidate record after a corrupt region must have an append time within this
#: distance of its predecessor; a cheap filter that makes false resynchronisation on garbage unlikely
#: before the CRC (which has the last word) is even computed.
_RESYNC_TIME_WINDOW_NS = 400 * 86400 * 10**9

FsyncPolicy = Literal["always", "batch", "never"]


#: Segments one append may evict to find room on a full file system before it gives up.
_DISK_FULL_EVICTIONS = 16


def _os_write(fd: int, data: bytes | memoryview) -> int:
    """One ``write(2)``; a module-level seam so tests can simulate ENOSPC without filling a disk."""
    return os.write(fd, data)


class Priority(IntEnum):
    """Delivery class of a record; decides eviction order when the quota is reached.

    Values are stored on disk: never renumber.
    """

    #: events, onsets, gaps, status: evicted only when nothing else is left
    CLINICAL = 0
    #: envelope, accelerometer: evicted before clinical data
    BULK = 1
    #: raw sEMG: evicted first
    RAW = 2


class SpoolError(Exception):
    """Base class of spool errors."""


class SpoolFullError(SpoolError):
    """The file system holding the spool is full (ENOSPC/EDQUOT); nothing was stored."""


class SpoolLockedError(SpoolError):
    """Another process (or another Spool object) holds the spool directory."""


class SpoolCorruptError(SpoolError):
    """The spool's metadata cannot be interpreted (for example a cursor file from a newer version)."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """A record returned by :meth:`Spool.peek`; pass it back to :meth:`Spool.ack` once delivered."""

    payload: bytes
    priority: Priority
    #: per-sink append sequence number: strictly increasing in append order (informational)
    seq: int
    #: wall-clock time of the append, UTC nanoseconds
    appended_ns: int
    #: opaque: (sink, priority, segment id, byte offset, end offset)
    position: tuple[str, int, int, int, int]


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Health figures the pipeline publishes (spool size, age and drops)."""

    #: bytes of all segment files on disk (what the quota limits)
    bytes: int
    quota_bytes: int
    #: records not yet acknowledged, per sink and priority
    pending_records: dict[str, dict[Priority, int]]
    #: payload bytes not yet acknowledged, per sink and priority
    pending_bytes: dict[str, dict[Priority, int]]
    #: age of the oldest unacknowledged record per sink (seconds; sinks with nothing pending omitted)
    oldest_age_s: dict[str, float]
    #: unacknowledged records deleted by the quota, by priority (persistent across restarts)
    evicted_records: dict[Priority, int]
    #: payload bytes of those records
    evicted_bytes: dict[Priority, int]
    #: appends refused because the quota was full of more important data, by priority (persistent)
    rejected_records: dict[Priority, int]
    #: corrupt regions (torn tails, bad CRCs) skipped or truncated by recovery since this open
    corrupt_records: int
    #: bytes in those regions
    corrupt_bytes: int
    #: why the file system refuses writes (ENOSPC/EDQUOT), or None while it takes them
    disk_full: str | None = None
    #: clinical records held in memory because the disk is full (lost if the process dies)
    memory_records: int = 0
    #: records that could be stored neither on disk nor in memory since open, by priority
    disk_full_dropped: dict[Priority, int] = field(default_factory=dict)

    @property
    def oldest_age_max_s(self) -> float | None:
        """Age of the oldest pending record over all sinks, or None when nothing is pending."""
        return max(self.oldest_age_s.values()) if self.oldest_age_s else None

    @property
    def total_pending_records(self) -> int:
        return sum(sum(per.values()) for per in self.pending_records.values())


@dataclass(slots=True)
class _Segment:
    sid: int  # seq of the segment's first record: unique and increasing within a sink
    path: Path
    size: int  # end of valid data (bytes)
    records: int = 0
    pending: int = 0
    pending_bytes: int = 0
    first_ns: int | None = None  # append time of the first record (eviction order across sinks)
    last_seq: int = -1
    #: corrupt regions found by recovery that readers must jump over: start offset -> end offset
    holes: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Stream:
    sink: str
    priority: Priority
    directory: Path
    segments: list[_Segment] = field(default_factory=list)  # ordered by sid
    by_sid: dict[int, _Segment] = field(default_factory=dict)
    #: position of the first record that may be unacknowledged: (segment id, offset)
    cur_sid: int = 0
    cur_off: int = len(MAGIC)
    #: acknowledged records at or after the cursor: (sid, offset) -> end offset
    acked: dict[tuple[int, int], int] = field(default_factory=dict)
    fd: int | None = None  # write descriptor of the last segment, when open for appending
    dirty: bool = False  # appended since the last fsync

    def find(self, sid: int) -> _Segment | None:
        return self.by_sid.get(sid)

    def add(self, seg: _Segment) -> None:
        assert not self.segments or seg.sid > self.segments[-1].sid
        self.segments.append(seg)
        self.by_sid[seg.sid] = seg

    def remove(self, seg: _Segment) -> None:
        self.segments.remove(seg)
        del self.by_sid[seg.sid]


class Spool:
    """Append-only on-disk spool with per-priority quota eviction; see the module docstring.

    Parameters:
        directory: where the spool lives; created if missing. Locked while open.
        quota_bytes: upper bound on the bytes of all segment files. Appending beyond it evicts whole
            segments, RAW first, then BULK; CLINICAL only when nothing else is left. An append is
            refused (and counted in ``rejected_records``) only if the space is all taken by more
            important data. Eviction works in whole segments, so keep the quota at several times
            ``segment_bytes`` times the number of (sink, priority) streams in use.
        segment_bytes: size at which a stream starts a new segment file; also the largest record.
        fsync: ``"always"``: ``fdatasync`` after every append and an fsynced cursor file after every
            ack (survives power loss, costs a flash write per call); ``"batch"``: at most every
            ``fsync_interval_s``, checked on each call and forced by :meth:`sync`; ``"never"``: leave
            it to the kernel (the cursor is still written every ``fsync_interval_s``, without fsync).
        fsync_interval_s: the batch interval.
        clock_ns: wall clock in UTC ns for record times (tests inject a fake one).
        memory_fallback: when the *file system* is full (not the quota), an append first evicts
            less important segments to free real space; if that is not enough, up to this many
            CLINICAL records are held in memory (delivered like the others, lost only if the
            process dies before a sink takes them) and less important records are dropped and
            counted, instead of raising. 0 (the default): ``SpoolFullError`` is raised.
    """

    def __init__(
        self,
        directory: Path,
        *,
        quota_bytes: int,
        segment_bytes: int = 4 * 1024 * 1024,
        fsync: FsyncPolicy = "batch",
        fsync_interval_s: float = 1.0,
        clock_ns: Callable[[], int] = time.time_ns,
        memory_fallback: int = 0,
    ) -> None:
        if segment_bytes < len(MAGIC) + RECORD_OVERHEAD + 1:
            raise ValueError(f"segment_bytes={segment_bytes} is too small for even one record")
        if quota_bytes < segment_bytes:
            raise ValueError(f"quota_bytes={quota_bytes} must be at least segment_bytes={segment_bytes}")
        if fsync not in ("always", "batch", "never"):
            raise ValueError(f"fsync must be 'always', 'batch' or 'never', not {fsync!r}")
        self.directory = Path(directory)
        self.quota_bytes = quota_bytes
        self.segment_bytes = segment_bytes
        self.fsync: FsyncPolicy = fsync
        self.fsync_interval_s = fsync_interval_s
        self._clock_ns = clock_ns
        self._lock_fd: int | None = None
        self._streams: dict[tuple[str, Priority], _Stream] = {}
        self._next_seq: dict[str, int] = {}
        self._bytes = 0
        self._evicted_records = {p: 0 for p in Priority}
        self._evicted_bytes = {p: 0 for p in Priority}
        self._rejected = {p: 0 for p in Priority}
        self._corrupt_records = 0
        self._corrupt_bytes = 0
        self._cursor_dirty = False
        self._last_sync = 0.0
        self.memory_fallback = memory_fallback
        self._mem: dict[str, list[SpoolRecord]] = {}
        self._disk_full: str | None = None
        self._disk_checked = 0.0
        self._disk_full_dropped = {p: 0 for p in Priority}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Lock the directory and recover: scan every segment, cut torn tails, restore the cursor."""
        if self._lock_fd is not None:
            raise SpoolError(f"spool {self.directory} is already open")
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(f"spool directory {self.directory} is in use by another process") from None
        self._lock_fd = fd
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Flush everything (fsync unless policy is "never"), persist the cursor, release the lock."""
        if self._lock_fd is None:
            return
        try:
            self._flush(fsync=self.fsync != "never", force_cursor=True)
        finally:
            self._release()

    def _release(self) -> None:
        for st in self._streams.values():
            if st.fd is not None:
                os.close(st.fd)
                st.fd = None
        self._streams.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise SpoolError(f"spool {self.directory} is not open (use it as a context manager)")

    # ------------------------------------------------------------------ public API

    def append(self, sink: str, priority: Priority, payload: bytes) -> bool:
        """Store one record for ``sink``. Returns False if the quota refused it (counted), else True.

        Raises SpoolFullError if the file system is full and ``memory_fallback`` is 0; the spool
        is left as it was. With ``memory_fallback``, see the class docstring.
        """
        try:
            ok = self._append_disk(sink, priority, payload)
        except SpoolFullError as exc:
            if not self.memory_fallback:
                raise
            return self._disk_full_append(sink, Priority(priority), payload, str(exc))
        if self._disk_full is not None and ok and self._disk_has_room():
            log.warning("spool %s: the disk has room again (was: %s)", self.directory, self._disk_full)
            self._disk_full = None
        return ok

    def _disk_has_room(self) -> bool:
        """At most once a second while the disk was full: is there room for two segments again?
        (An append that succeeds because eviction just freed a segment does not count.)"""
        now = time.monotonic()
        if now - self._disk_checked < 1.0:
            return False
        self._disk_checked = now
        try:
            vfs = os.statvfs(self.directory)
        except OSError:
            return False
        return vfs.f_bavail * vfs.f_frsize >= 2 * self.segment_bytes

    def _disk_full_append(self, sink: str, priority: Priority, payload: bytes, why: str) -> bool:
        """The file system is full: free real space by the eviction order, else hold in memory."""
        if self._disk_full is None:
            log.error(
                "spool %s: %s; evicting by priority, clinical records held in memory", self.directory, why
            )
        self._disk_full = why
        self._disk_checked = time.monotonic()
        for _ in range(_DISK_FULL_EVICTIONS):  # bounded: an append must never spin
            if not self._evict_for_disk(priority):
                break
            try:
                return self._append_disk(sink, priority, payload)
            except SpoolFullError:
                continue
        held = sum(len(v) for v in self._mem.values())
        if priority == Priority.CLINICAL and held < self.memory_fallback:
            seq = self._next_seq.get(sink, 0)
            self._next_seq[sink] = seq + 1
            rec = SpoolRecord(payload, priority, seq, self._clock_ns(), (sink, int(priority), -1, seq, seq))
            self._mem.setdefault(sink, []).append(rec)
            return True
        self._disk_full_dropped[priority] += 1
        self._rejected[priority] += 1
        return False

    def _evict_for_disk(self, incoming: Priority) -> bool:
        """Delete one segment to give the file system room: acknowledged ones first, then the
        oldest of the least important class below ``incoming``. False if there is none."""
        # Segments holding acknowledged records free real space; an empty one (a header the
        # last failed append left) frees nothing and is left to be reused.
        done = [
            (st, seg)
            for st in self._streams.values()
            for seg in st.segments
            if seg.pending == 0 and seg.records > 0
        ]
        if done:
            self._drop_segment(*done[0])
            return True
        for victim_prio in sorted(Priority, reverse=True):
            if victim_prio <= incoming:
                break
            cands = [
                (seg.first_ns or 0, seg.sid, st.sink, st, seg)
                for (_s, p), st in self._streams.items()
                if p == victim_prio
                for seg in st.segments
            ]
            if cands:
                _, _, _, st, seg = min(cands, key=lambda c: c[:3])
                self._evicted_records[victim_prio] += seg.pending
                self._evicted_bytes[victim_prio] += seg.pending_bytes
                self._drop_segment(st, seg)
                self._cursor_dirty = True
                return True
        return False

    def _append_disk(self, sink: str, priority: Priority, payload: bytes) -> bool:
        self._check_open()
        priority = Priority(priority)
        _check_sink(sink)
        size = RECORD_OVERHEAD + len(payload)
        if len(MAGIC) + size > self.segment_bytes:
            raise ValueError(
                f"record of {len(payload)} bytes for sink {sink!r} exceeds segment_bytes={self.segment_bytes}"
            )
        st = self._stream(sink, priority)
        need = self._bytes_needed(st, size)
        if self._bytes + need > self.quota_bytes:
            room = self._make_room(need, priority)
            # eviction may have taken the segment we meant to append to: then a new header is needed too
            need = self._bytes_needed(st, size)
            if room and self._bytes + need > self.quota_bytes:
                room = self._make_room(need, priority)
            if not room:
                self._rejected[priority] += 1
                self._cursor_dirty = True
                return False
        # eviction may have removed the segment we meant to append to
        if st.fd is None or st.segments[-1].size + size > self.segment_bytes:
            seg = self._roll(st)
        else:
            seg = st.segments[-1]
        seq = self._next_seq.get(sink, 0)
        now = self._clock_ns()
        body = struct.pack("<BQQ", priority, seq, now) + payload
        rec = struct.pack("<II", len(payload), zlib.crc32(body)) + body
        assert st.fd is not None
        self._write_record(st.fd, seg, rec)
        self._next_seq[sink] = seq + 1
        seg.records += 1
        seg.pending += 1
        seg.pending_bytes += len(payload)
        if seg.first_ns is None:
            seg.first_ns = now
        seg.size += len(rec)
        seg.last_seq = seq
        self._bytes += len(rec)
        st.dirty = True
        if self.fsync == "always":
            os.fdatasync(st.fd)
            st.dirty = False
        else:
            self._maybe_flush()
        return True

    def peek(self, sink: str, max_records: int, max_bytes: int) -> list[SpoolRecord]:
        """The oldest unacknowledged records of ``sink`` in append order (across priorities).

        Stops before ``max_records`` or ``max_bytes`` of payload would be exceeded, but always returns
        at least one record if any is pending, so one large record cannot block the queue. Does not
        consume: the same records come back until acknowledged.
        """
        self._check_open()
        if max_records <= 0:
            return []
        streams = [st for (s, _), st in self._streams.items() if s == sink]
        out: list[SpoolRecord] = []
        total = 0
        disk = (self._iter_stream(st) for st in streams)
        for rec in merge(*disk, iter(list(self._mem.get(sink, ()))), key=lambda r: r.seq):
            if out and total + len(rec.payload) > max_bytes:
                break
            out.append(rec)
            total += len(rec.payload)
            if len(out) >= max_records:
                break
        return out

    def ack(self, sink: str, records: list[SpoolRecord]) -> None:
        """Mark records delivered: they are never returned again; fully acked segments are deleted.

        Idempotent (acking twice, or acking a record evicted meanwhile, is harmless).
        """
        self._check_open()
        touched: dict[Priority, _Stream] = {}
        for rec in records:
            r_sink, prio, sid, off, end = rec.position
            if r_sink != sink:
                raise ValueError(f"record at {rec.position} belongs to sink {r_sink!r}, not {sink!r}")
            if sid == -1:  # held in memory while the disk was full
                held = self._mem.get(sink, [])
                self._mem[sink] = [r for r in held if r.seq != rec.seq]
                continue
            st = self._streams.get((sink, Priority(prio)))
            if st is None:
                continue
            seg = st.find(sid)
            if seg is None or (sid, off) < (st.cur_sid, st.cur_off) or (sid, off) in st.acked:
                continue  # already acked, or evicted
            if end > seg.size:
                raise ValueError(f"record position {rec.position} lies beyond the end of {seg.path}")
            st.acked[(sid, off)] = end
            seg.pending -= 1
            seg.pending_bytes -= end - off - RECORD_OVERHEAD
            touched[st.priority] = st
        for st in touched.values():
            self._advance(st)
        if touched:
            self._cursor_dirty = True
            if self.fsync == "always":
                self._write_cursor(fsync=True)
            else:
                self._maybe_flush()

    def stats(self) -> SpoolStats:
        """Current health figures; cheap (one small read per stream with pending records)."""
        self._check_open()
        pending: dict[str, dict[Priority, int]] = {}
        pbytes: dict[str, dict[Priority, int]] = {}
        oldest: dict[str, int] = {}
        for (sink, prio), st in self._streams.items():
            pending.setdefault(sink, {p: 0 for p in Priority})[prio] = sum(s.pending for s in st.segments)
            pbytes.setdefault(sink, {p: 0 for p in Priority})[prio] = sum(
                s.pending_bytes for s in st.segments
            )
            first = next(self._iter_stream(st, headers_only=True), None)
            if first is not None:
                oldest[sink] = min(oldest.get(sink, first.appended_ns), first.appended_ns)
        for sink, held in self._mem.items():
            if held:
                per = pending.setdefault(sink, {p: 0 for p in Priority})
                per[Priority.CLINICAL] += len(held)
                oldest[sink] = min(oldest.get(sink, held[0].appended_ns), held[0].appended_ns)
        now = self._clock_ns()
        return SpoolStats(
            bytes=self._bytes,
            quota_bytes=self.quota_bytes,
            pending_records=pending,
            pending_bytes=pbytes,
            oldest_age_s={s: max(0.0, (now - t) / 1e9) for s, t in oldest.items()},
            evicted_records=dict(self._evicted_records),
            evicted_bytes=dict(self._evicted_bytes),
            rejected_records=dict(self._rejected),
            corrupt_records=self._corrupt_records,
            corrupt_bytes=self._corrupt_bytes,
            disk_full=self._disk_full,
            memory_records=sum(len(v) for v in self._mem.values()),
            disk_full_dropped=dict(self._disk_full_dropped),
        )

    def sinks(self) -> list[str]:
        """Sinks that have (or had, since open) a stream in this spool."""
        self._check_open()
        return sorted({s for s, _ in self._streams})

    def sync(self) -> None:
        """Force everything to stable storage now: segment data and the cursor file (always fsyncs)."""
        self._check_open()
        self._flush(fsync=True, force_cursor=True)

    # ------------------------------------------------------------------ writing

    def _stream(self, sink: str, priority: Priority) -> _Stream:
        st = self._streams.get((sink, priority))
        if st is None:
            st = _Stream(sink, priority, self.directory / sink / f"p{int(priority)}")
            st.cur_sid = self._next_seq.get(sink, 0)
            self._streams[(sink, priority)] = st
        return st

    def _roll(self, st: _Stream) -> _Segment:
        """Start a new segment for ``st`` named after the next sequence number."""
        if st.fd is not None:
            os.close(st.fd)
            st.fd = None
        sid = self._next_seq.get(st.sink, 0)
        created_dir = not st.directory.exists()
        path = st.directory / f"{sid:020d}.seg"
        try:
            st.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._os_error(e, st.directory) from e
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError as e:
            raise self._os_error(e, path) from e
        seg = _Segment(sid, path, 0)
        try:
            self._write_record(fd, seg, MAGIC)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        seg.size = len(MAGIC)
        self._bytes += len(MAGIC)
        st.add(seg)
        st.fd = fd
        if self.fsync != "never":
            # make the new file's directory entry durable, or a power cut could lose the whole file
            if created_dir:
                _fsync_dir(st.directory.parent)
                _fsync_dir(st.directory.parent.parent)
            _fsync_dir(st.directory)
        return seg

    def _write_record(self, fd: int, seg: _Segment, data: bytes) -> None:
        """Write all of ``data`` at the end of ``seg``; on failure cut the file back to where it was."""
        view = memoryview(data)
        try:
            while view:
                n = _os_write(fd, view)
                view = view[n:]
        except OSError as e:
            try:
                os.ftruncate(fd, seg.size)
            except OSError:
                pass  # recovery will cut the torn tail at the next open
            raise self._os_error(e, seg.path) from e

    def _os_error(self, e: OSError, path: Path) -> SpoolError:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return SpoolFullError(f"no space left for spool {self.directory} (writing {path}): {e.strerror}")
        return SpoolError(f"spool {self.directory}: cannot write {path}: {e}")

    def _bytes_needed(self, st: _Stream, size: int) -> int:
        """Bytes an append of a ``size``-byte record adds: plus a segment header if it starts a segment."""
        if st.fd is None or st.segments[-1].size + size > self.segment_bytes:
            return size + len(MAGIC)
        return size

    def _make_room(self, need: int, incoming: Priority) -> bool:
        """Free space for ``need`` bytes: acked segments first, then evict, least important first.

        An incoming record may evict classes down to its own priority, never more important ones.
        """
        for st in self._streams.values():
            for seg in list(st.segments):
                if seg.pending == 0 and self._bytes + need > self.quota_bytes:
                    self._drop_segment(st, seg)
        for victim_prio in sorted(Priority, reverse=True):
            if victim_prio < incoming:
                break
            while self._bytes + need > self.quota_bytes:
                cands = [
                    (seg.first_ns or 0, seg.sid, st.sink, st, seg)
                    for (s, p), st in self._streams.items()
                    if p == victim_prio
                    for seg in st.segments
                ]
                if not cands:
                    break
                _, _, _, st, seg = min(cands, key=lambda c: c[:3])
                self._evicted_records[victim_prio] += seg.pending
                self._evicted_bytes[victim_prio] += seg.pending_bytes
                self._drop_segment(st, seg)
                self._cursor_dirty = True
        return self._bytes + need <= self.quota_bytes

    def _drop_segment(self, st: _Stream, seg: _Segment) -> None:
        if st.segments and st.segments[-1] is seg and st.fd is not None:
            os.close(st.fd)
            st.fd = None
        st.remove(seg)
        seg.path.unlink(missing_ok=True)
        self._bytes -= seg.size
        for key in [k for k in st.acked if k[0] == seg.sid]:
            del st.acked[key]
        self._normalise(st)

    # ------------------------------------------------------------------ reading and acks

    def _iter_stream(self, st: _Stream, headers_only: bool = False) -> Iterator[SpoolRecord]:
        """Unacknowledged records of one stream from its cursor on, oldest first."""
        self._normalise(st)
        for seg in st.segments:
            if seg.sid < st.cur_sid:
                continue
            off = st.cur_off if seg.sid == st.cur_sid else len(MAGIC)
            if off >= seg.size:
                continue
            with open(seg.path, "rb", buffering=0) as f:
                buf = b""
                base = off  # file offset of buf[0]
                while off < seg.size:
                    if off in seg.holes:
                        off = seg.holes[off]
                        continue
                    end_known = st.acked.get((seg.sid, off))
                    if end_known is not None:
                        off = end_known
                        continue
                    rel = off - base
                    if rel + RECORD_OVERHEAD > len(buf):
                        f.seek(off)
                        buf = f.read(min(_READ_CHUNK, seg.size - off))
                        base, rel = off, 0
                    length, _crc, prio, seq, t_ns = RECORD_HEADER.unpack_from(buf, rel)
                    end = off + RECORD_OVERHEAD + length
                    if end > seg.size:
                        raise SpoolCorruptError(f"{seg.path}: record at byte {off} runs past the valid end")
                    if headers_only:
                        payload = b""
                    else:
                        if rel + RECORD_OVERHEAD + length > len(buf):
                            f.seek(off)
                            buf = f.read(max(min(_READ_CHUNK, seg.size - off), RECORD_OVERHEAD + length))
                            base, rel = off, 0
                        payload = buf[rel + RECORD_OVERHEAD : rel + RECORD_OVERHEAD + length]
                    yield SpoolRecord(
                        payload, Priority(prio), seq, t_ns, (st.sink, int(st.priority), seg.sid, off, end)
                    )
                    off = end

    def _advance(self, st: _Stream) -> None:
        """Move the cursor over acknowledged records and delete segments left entirely behind it."""
        while True:
            self._normalise(st)
            seg = st.find(st.cur_sid)
            if seg is None:
                break
            if st.cur_off in seg.holes:
                st.cur_off = seg.holes[st.cur_off]
                continue
            end = st.acked.pop((st.cur_sid, st.cur_off), None)
            if end is None:
                break
            st.cur_off = end
        for seg in list(st.segments):
            if seg.sid < st.cur_sid:
                self._drop_segment(st, seg)

    def _normalise(self, st: _Stream) -> None:
        """Point the cursor at an existing segment when its own is gone or read to the end."""
        seg = st.find(st.cur_sid)
        if seg is None:
            later = next((s for s in st.segments if s.sid > st.cur_sid), None)
            if later is not None:
                st.cur_sid, st.cur_off = later.sid, len(MAGIC)
            return
        if st.cur_off < seg.size:
            return  # the common case, kept O(1): drains call this once per acknowledged record
        i = st.segments.index(seg)
        while st.cur_off >= seg.size and i + 1 < len(st.segments):
            i += 1
            seg = st.segments[i]
            st.cur_sid, st.cur_off = seg.sid, len(MAGIC)

    # ------------------------------------------------------------------ durability

    def _maybe_flush(self) -> None:
        if self.fsync == "always":
            return
        if time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self._flush(fsync=self.fsync == "batch", force_cursor=False)

    def _flush(self, *, fsync: bool, force_cursor: bool) -> None:
        if fsync:
            for st in self._streams.values():
                if st.fd is not None and st.dirty:
                    os.fdatasync(st.fd)
                    st.dirty = False
        if self._cursor_dirty or force_cursor:
            try:
                self._write_cursor(fsync=fsync)
            except SpoolFullError as exc:
                if not self.memory_fallback:
                    raise
                # The cursor only saves re-sending after a crash (at-least-once): keep it dirty
                # and retry at the next flush rather than failing the caller.
                self._disk_full = str(exc)
                self._disk_checked = time.monotonic()
        self._last_sync = time.monotonic()

    def _write_cursor(self, *, fsync: bool) -> None:
        """Persist read positions atomically: write a temporary file, fsync it, rename over the old."""
        state = {
            "version": CURSOR_VERSION,
            "next_seq": self._next_seq,
            "streams": {
                f"{st.sink}/{int(st.priority)}": {
                    "sid": st.cur_sid,
                    "off": st.cur_off,
                    "acked": sorted([sid, off, end] for (sid, off), end in st.acked.items()),
                }
                for st in self._streams.values()
            },
            "evicted_records": {str(int(p)): n for p, n in self._evicted_records.items()},
            "evicted_bytes": {str(int(p)): n for p, n in self._evicted_bytes.items()},
            "rejected_records": {str(int(p)): n for p, n in self._rejected.items()},
        }
        path = self.directory / CURSOR_FILE
        tmp = path.with_suffix(".tmp")
        data = json.dumps(state, separators=(",", ":")).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[_os_write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if fsync:
                _fsync_dir(self.directory)
        except OSError as e:
            raise self._os_error(e, tmp) from e
        self._cursor_dirty = False

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        self._streams.clear()
        self._bytes = 0
        self._corrupt_records = self._corrupt_bytes = 0
        cursor = self._read_cursor()
        self._next_seq = {str(k): int(v) for k, v in cursor.get("next_seq", {}).items()}
        for name, target in (
            ("evicted_records", self._evicted_records),
            ("evicted_bytes", self._evicted_bytes),
            ("rejected_records", self._rejected),
        ):
            for p in Priority:
                target[p] = int(cursor.get(name, {}).get(str(int(p)), 0))
        saved = cursor.get("streams", {})
        for sink_dir in sorted(self.directory.iterdir()):
            if not sink_dir.is_dir() or not _SINK_RE.match(sink_dir.name):
                continue
            for prio in Priority:
                pdir = sink_dir / f"p{int(prio)}"
                if not pdir.is_dir():
                    continue
                st = _Stream(sink_dir.name, prio, pdir)
                for path in sorted(pdir.iterdir()):
                    m = _SEG_RE.match(path.name)
                    if m is None:
                        continue
                    seg = self._scan_segment(path, int(m.group(1)), prio)
                    if seg is not None:
                        st.add(seg)
                        self._bytes += seg.size
                self._streams[(st.sink, prio)] = st
                self._restore_cursor(st, saved.get(f"{st.sink}/{int(prio)}"))
        for (sink, _), st in self._streams.items():
            max_seq = max((s.sid for s in st.segments), default=-1)
            self._next_seq[sink] = max(self._next_seq.get(sink, 0), max_seq + 1)
        for st in self._streams.values():
            for seg in st.segments:
                self._next_seq[st.sink] = max(self._next_seq[st.sink], seg.last_seq + 1)
        # count what is pending: records at/after the cursor that are not acked
        for st in self._streams.values():
            for seg in st.segments:
                seg.pending = seg.pending_bytes = 0
            for rec in self._iter_stream(st, headers_only=True):
                seg = st.find(rec.position[2])
                assert seg is not None
                seg.pending += 1
                seg.pending_bytes += rec.position[4] - rec.position[3] - RECORD_OVERHEAD
            self._advance(st)
        # reopen the last segment of each stream for appending if it has room
        for st in self._streams.values():
            if st.segments:
                fd = os.open(st.segments[-1].path, os.O_WRONLY | os.O_APPEND)
                st.fd = fd
        self._cursor_dirty = True

    def _read_cursor(self) -> dict[str, Any]:
        path = self.directory / CURSOR_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            state = json.loads(raw)
        except ValueError:
            # rename-over-write makes a half-written cursor impossible, so this is outside damage;
            # treat it as "nothing acked": re-delivering is safe, losing data is not
            self._corrupt_records += 1
            self._corrupt_bytes += len(raw)
            path.rename(path.with_suffix(".bad"))
            return {}
        version = state.get("version") if isinstance(state, dict) else None
        if version != CURSOR_VERSION:
            raise SpoolCorruptError(
                f"{path}: unsupported cursor version {version!r}, expected {CURSOR_VERSION}"
            )
        return state

    def _restore_cursor(self, st: _Stream, saved: dict[str, Any] | None) -> None:
        if saved is None:
            st.cur_sid = st.segments[0].sid if st.segments else self._next_seq.get(st.sink, 0)
            st.cur_off = len(MAGIC)
            return
        st.cur_sid, st.cur_off = int(saved["sid"]), int(saved["off"])
        seg = st.find(st.cur_sid)
        if seg is not None and st.cur_off > seg.size:
            st.cur_off = seg.size  # the tail it pointed into was cut by recovery
        existing = {s.sid: s for s in st.segments}
        for sid, off, end in saved.get("acked", []):
            s = existing.get(int(sid))
            if s is not None and int(end) <= s.size:  # stale entries for deleted segments are dropped
                st.acked[(int(sid), int(off))] = int(end)

    def _scan_segment(self, path: Path, sid: int, prio: Priority) -> _Segment | None:
        """Validate a segment record by record; cut a torn tail, skip corrupt regions in the middle."""
        data = path.read_bytes()
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            # a crash while creating the file leaves it empty or with a partial magic
            if data and not MAGIC.startswith(data):
                self._corrupt_records += 1
                self._corrupt_bytes += len(data)
                path.rename(path.with_suffix(".bad"))
            else:
                path.unlink()
            return None
        seg = _Segment(sid, path, len(data))
        off = len(MAGIC)
        prev_seq, prev_ns = sid - 1, None
        while off < len(data):
            ok = _valid_at(data, off, prio, prev_seq, prev_ns)
            if ok is not None:
                end, seq, t_ns = ok
                seg.records += 1
                if seg.first_ns is None:
                    seg.first_ns = t_ns
                prev_seq, prev_ns = seq, t_ns
                seg.last_seq = seq
                off = end
                continue
            # corrupt at `off`: look for the next record that validates, else it is the tail
            nxt = next(
                (
                    o
                    for o in range(off + 1, len(data) - RECORD_OVERHEAD + 1)
                    if _valid_at(data, o, prio, prev_seq, prev_ns) is not None
                ),
                None,
            )
            self._corrupt_records += 1
            if nxt is None:
                self._corrupt_bytes += len(data) - off
                with open(path, "r+b") as f:
                    f.truncate(off)
                    if self.fsync != "never":
                        os.fsync(f.fileno())
                seg.size = off
                break
            self._corrupt_bytes += nxt - off
            seg.holes[off] = nxt
            off = nxt
        return seg


def _valid_at(
    data: bytes, off: int, prio: Priority, prev_seq: int, prev_ns: int | None
) -> tuple[int, int, int] | None:
    """(end, seq, append_ns) if a well-formed record starts at ``off``, else None (cheap checks first)."""
    if off + RECORD_OVERHEAD > len(data):
        return None
    length, crc, p, seq, t_ns = RECORD_HEADER.unpack_from(data, off)
    end = off + RECORD_OVERHEAD + length
    if p != prio or end > len(data) or seq <= prev_seq:
        return None
    if prev_ns is not None and abs(t_ns - prev_ns) > _RESYNC_TIME_WINDOW_NS:
        return None
    if zlib.crc32(memoryview(data)[off + _CRC_FROM : end]) != crc:
        return None
    return end, seq, t_ns


def _check_sink(sink: str) -> None:
    if not _SINK_RE.match(sink):
        raise ValueError(
            f"sink name {sink!r} must be 1-64 characters of letters, digits, '_', '.', '-' "
            "(it names a directory) and not start with '.' or '-'"
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
