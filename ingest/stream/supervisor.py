"""What keeps a device pipeline honest: progress counters, pending gaps, the last sample on disk.

``Progress`` sits between a ``DeviceSession`` and the router. Series outputs (the display envelope
and the accelerometer) are produced only for samples the detector has just accepted, so counting
them measures "samples actually passing through the detector": that, not a connected link, is
what ``monitoring: true`` means.

When a pipeline is restarted (a failure inside it, or the whole gateway after a kill -9 or a power
cut) the time between the last sample it handled and the first new one is lost. ``Progress``
carries such a ``PendingGap`` and emits it, timed to the first new sample, before that sample's
series, so the hole is recorded on MQTT and in the store like any other gap.

``supervise`` is the loop around a pipeline, the same for the gateway's device runners and the
central worker's leased devices: a failure is logged once per cause, shown at once (the caller's
``failed``: ``monitoring: false`` with the reason), and the pipeline restarted after a backoff with
a fresh session whose ``Progress`` records the lost time as a ``pipeline_restart`` gap.

``LastSampleStore`` persists, per device, the last sample time the gateway handled (once a second,
fsync'd, atomically replaced), so that after a restart the gap can start where the data stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ingest.outputs import payloads
from ingest.outputs.delivery import Backoff
from ingest.stream.records import EventRecord, GapRecord, OnsetRecord, gap_id
from ingest.stream.session import Output

log = logging.getLogger(__name__)

__all__ = ["LastSample", "LastSampleStore", "PendingGap", "Progress", "restart_gap", "supervise"]

RestartCause = Literal["gateway_restart", "pipeline_restart"]
#: A persisted "last sample" older than this is not bridged by one gap (a box switched off for a
#: month is not a gap in a night's recording); the gap is still recorded, capped at this length.
MAX_RESTART_GAP_S = 7 * 24 * 3600.0
#: Without samples through the detector for this long, a connected device is "not monitored".
PROGRESS_WINDOW_S = 2.0
#: A pipeline that ran this long before failing starts its backoff afresh.
HEALTHY_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class LastSample:
    """The last EMG sample a pipeline handled: when (UTC, end of the sample) and where."""

    t: float
    boot_id: int
    counter: int
    rate_hz: float


@dataclass(frozen=True, slots=True)
class PendingGap:
    """A hole to record from ``since`` to the first sample the restarted pipeline handles."""

    cause: RestartCause
    since: LastSample


class Progress:
    """Wraps a session's ``emit``: counts samples through the detector, emits pending gaps."""

    def __init__(
        self,
        device: str,
        emit: Callable[[Output], None],
        *,
        pending: PendingGap | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = device
        self.emit = emit
        self.pending = pending
        self.clock = clock
        self.samples = 0  # envelope/acc samples (the detector accepted the EMG behind them)
        self.last_t: float | None = None  # UTC of the newest series sample
        self.last_mono: float | None = None  # host monotonic time of the newest progress
        self.started_mono = clock()
        self.session: Any = None  # set by the runner: where boot id and counters are read
        #: "unsynchronised" while the host clock cannot be trusted (events carry it), else None.
        self.time_quality: Callable[[], str | None] = lambda: None

    def __call__(self, out: Output) -> None:
        s = out.series
        if s is not None and out.kind in ("envelope", "acc") and len(s.t_ns):
            t_first, t_last = float(s.t_ns[0]) / 1e9, float(s.t_ns[-1]) / 1e9
            if self.pending is not None:
                pending, self.pending = self.pending, None
                self._emit_gap(pending, t_first)
            if self.last_t is None or t_last > self.last_t:
                new = len(s.t_ns) if self.last_t is None else int((s.t_ns > self.last_t * 1e9).sum())
                self.samples += new
                self.last_t = t_last
            self.last_mono = self.clock()
        elif out.kind in ("event", "onset") and isinstance(out.record, (EventRecord, OnsetRecord)):
            quality = self.time_quality()
            if quality is not None:
                stamped = dataclasses.replace(out.record, time_quality=quality)
                out = Output(out.kind, stamped, source=out.source)
        self.emit(out)

    def progressing(self, window_s: float) -> bool:
        """Samples went through the detector within the last ``window_s`` seconds."""
        return self.last_mono is not None and self.clock() - self.last_mono <= window_s

    def last_sample(self) -> LastSample | None:
        """Where the data stopped, for a gap after a restart (None before the first sample)."""
        emg = getattr(self.session, "emg", None)
        if self.last_t is None or emg is None or emg.expected is None:
            return None
        return LastSample(
            t=self.last_t,
            boot_id=int(getattr(self.session, "boot_id", 0)),
            counter=int(emg.expected),
            rate_hz=float(emg.rate_hz),
        )

    def _emit_gap(self, pending: PendingGap, t_first: float) -> None:
        since = pending.since
        t0 = since.t
        t1 = t_first
        if not t1 > t0:
            return  # the new data overlaps what was handled: nothing lost
        if t1 - t0 > MAX_RESTART_GAP_S:
            t0 = t1 - MAX_RESTART_GAP_S
        missing = round((t1 - t0) * since.rate_hz)
        rec = GapRecord(
            id=gap_id(self.device, since.boot_id, "emg", since.counter, pending.cause),
            device=self.device,
            boot_id=since.boot_id,
            domain="emg",
            cause=pending.cause,
            start_counter=since.counter,
            samples_missing=missing,
            t_start=t0,
            t_end=t1,
        )
        log.warning(
            "device %s: %s gap of %.1f s recorded (%s .. %s)",
            self.device,
            pending.cause,
            t1 - t0,
            payloads.iso(t0),
            payloads.iso(t1),
        )
        self.emit(Output("gap", rec))


def restart_gap(old: Progress | None) -> PendingGap | None:
    """The gap a restarted pipeline records: from the last sample the failed one handled (or a
    restart gap it had not recorded yet) to the first sample of the fresh one."""
    if old is None:
        return None
    last = old.last_sample()
    if last is not None:
        return PendingGap("pipeline_restart", last)
    return old.pending


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    failed: Callable[[str], None],
    restart: Callable[[], None],
    backoff: Backoff,
    healthy_after_s: float = HEALTHY_AFTER_S,
) -> None:
    """Run one pipeline (``run``) for ever, or until it returns (a finite source ended).

    An exception inside it is logged with its traceback the first time a cause is seen (then one
    line with a count), handed to ``failed`` at once (show it: state, ``monitoring: false``, the
    reason, retained), and after a backoff ``restart`` builds a fresh session (see
    ``restart_gap``) before ``run`` is called again. Cancellation is never caught."""
    seen: dict[str, int] = {}
    started = time.monotonic()
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            cause = f"{type(exc).__name__}: {exc}"
            n = seen[cause] = seen.get(cause, 0) + 1
            if time.monotonic() - started > healthy_after_s:
                backoff.reset()
            delay = backoff.next()
            if n == 1:
                log.error("device %s: pipeline failed (%s); restarting in %.1f s", name, cause, delay,
                          exc_info=exc)  # fmt: skip
            else:
                log.error("device %s: pipeline failed again (%s, %d times); restarting in %.1f s",
                          name, cause, n, delay)  # fmt: skip
            failed(cause)
            await asyncio.sleep(delay)
            restart()
            started = time.monotonic()


class LastSampleStore:
    """``<state_dir>/last_sample/<device>.json``: written atomically, fsync'd, at most once a second."""

    def __init__(self, directory: Path, *, min_interval_s: float = 1.0) -> None:
        self.directory = directory
        self.min_interval_s = min_interval_s
        self._written: dict[str, tuple[float, LastSample]] = {}
        self._warned: set[str] = set()

    def path(self, device: str) -> Path:
        return self.directory / f"{device}.json"

    def load(self, device: str) -> LastSample | None:
        """What a previous run persisted; None if nothing (or nothing usable) is there."""
        p = self.path(device)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            last = LastSample(
                float(data["t"]), int(data["boot_id"]), int(data["counter"]), float(data["rate_hz"])
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable last-sample record ignored (%s)", p, exc)
            return None
        if not (math.isfinite(last.t) and last.rate_hz > 0):
            return None
        return last

    def save(self, device: str, last: LastSample | None, *, force: bool = False) -> bool:
        """Persist ``last`` if it changed and the last write is old enough. Never raises: a
        failure is logged once per device (the spool reports a full disk in the status)."""
        if last is None:
            return False
        now = time.monotonic()
        prev = self._written.get(device)
        if prev is not None and (prev[1] == last or (not force and now - prev[0] < self.min_interval_s)):
            return False
        p = self.path(device)
        tmp = p.with_suffix(".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(
                    fd,
                    json.dumps(
                        {
                            "t": last.t,
                            "boot_id": last.boot_id,
                            "counter": last.counter,
                            "rate_hz": last.rate_hz,
                        }
                    ).encode(),
                )
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, p)
        except OSError as exc:
            if device not in self._warned:
                self._warned.add(device)
                log.error("device %s: cannot persist the last sample time to %s: %s", device, p, exc.strerror)
            return False
        self._warned.discard(device)
        self._written[device] = (now, last)
        return True


def reanchor(session: Any, delta_s: float) -> None:
    """The host clock stepped by ``delta_s`` (``HostClock``): move a session's clock models and
    the times it keeps, so what follows is stamped on the new clock and nothing published moves."""
    for name in ("emg", "acc"):
        dom = getattr(session, name, None)
        if dom is None:
            continue
        dom.clock.shift(delta_s)
        if dom.last_t_end is not None:
            dom.last_t_end += delta_s
