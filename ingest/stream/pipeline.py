"""The one way from link bytes to a device session, shared by every command.

Every command is a *source* of link records and a set of *outputs* around the same core::

    link records ──▶ DecodeLoop ──frames──▶ DeviceSession ──typed records──▶ emit (router, collector)
    (t_host, DATA | DOWN | UP, bytes)      (ingest.stream.session)          (ingest.stream.records)

A *link record* is what a capture file (``ingest.files.recording``) and a frames batch over MQTT
(``ingest.stream.frames``) already hold: bytes as they arrived with the host's receive time, and
the moments the link went down and came back up. The live gateway produces the same records from
its transport (``ingest.stream.runner.DeviceRunner``), so the live run, a replay, a central worker,
``neurospasm detect`` on a capture and ``export-edf`` all decode with the same ``DecodeLoop`` and
give the same frames, gaps and event ids.

``DecodeLoop`` owns the device kind's link decoder (``ingest.wire.kinds.decoder_for``): a fresh
decoder per connection, since a partial frame never continues across a reconnect, while the
decode-error counts add up over the device's whole life, so a status payload never forgets them
at a link change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from ingest.wire.base import LinkDecoder
from ingest.wire.kinds import decoder_for
from ingest.wire.protocol import Frame, InfoFrame, StatusFrame

if TYPE_CHECKING:
    from ingest.stream.session import DeviceSession

__all__ = ["DATA", "DOWN", "UP", "DecodeLoop", "LinkRecord", "LinkRecordLike", "run_records"]

#: Link record kinds, the values a capture's record section and a frames payload use.
DATA: Final = 0  # bytes received from the device (one transport chunk)
DOWN: Final = 1  # the link broke: the session's ``on_disconnect``
UP: Final = 2  # the link is open again: a new decoder


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """One thing that happened on a device link, at host time ``t_host`` (UTC seconds)."""

    t_host: float
    kind: int
    data: bytes = b""
    #: The BLE characteristic the bytes came on, for devices that send on several ("" otherwise).
    source: str = ""


class LinkRecordLike(Protocol):
    """Anything with a link record's fields: ``LinkRecord``, a capture's ``CaptureRecord``."""

    @property
    def t_host(self) -> float: ...
    @property
    def kind(self) -> int: ...
    @property
    def data(self) -> bytes: ...


class DecodeLoop:
    """Link records of one device into its ``DeviceSession``, the same way for every command.

    Parameters:
        session: the device's session; it gets every decoded frame with its chunk's host time.
        kind: the ``[[devices]]`` kind, which picks the link decoder.
        detect: False on a forwarding gateway: the session sees INFO and STATUS frames only
            (who the device is, battery), a central worker runs the detector on the bytes.
        observe: optional, called with every decoded frame and its host time (EDF export keeps
            the sample blocks; tools count frames).
        options: the ``[[devices]]`` table's vendor ``options`` (``ingest.wire.kinds``).
    """

    def __init__(
        self,
        session: DeviceSession,
        kind: str = "neurospasm",
        *,
        detect: bool = True,
        observe: Callable[[Frame, float], None] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.kind = kind
        #: The ``[[devices]]`` table's vendor settings, for every connection's decoder.
        self.options: Mapping[str, Any] = dict(options or {})
        self.detect = detect
        self.observe = observe
        self.decoder: LinkDecoder = decoder_for(kind, self.options)
        self.connections = 0
        self._closed_errors: dict[str, int] = {}
        self._closed_frames = 0

    # -- link events -----------------------------------------------------------------------
    def _new_decoder(self) -> LinkDecoder:
        for reason, n in self.decoder.stats.errors.items():
            self._closed_errors[reason] = self._closed_errors.get(reason, 0) + n
        self._closed_frames += self.decoder.stats.frames
        self.decoder = decoder_for(self.kind, self.options)
        return self.decoder

    def link_up(self, t_host: float) -> LinkDecoder:
        """A new connection: a fresh decoder (returned, for its start commands)."""
        self.connections += 1
        if self.detect:
            self.session.on_connect(t_host)
        return self._new_decoder()

    def link_down(self, t_host: float) -> None:
        """The link broke: held frames are processed, the gap is recorded when data resumes."""
        self.session.on_disconnect(t_host)
        self._new_decoder()

    # -- data --------------------------------------------------------------------------------
    def data(self, t_host: float, data: bytes, source: str = "") -> None:
        """One transport chunk: decode it and hand its frames to the session."""
        session, observe, detect = self.session, self.observe, self.detect
        for frame in self.decoder.feed(data, source, t_host):
            if detect or isinstance(frame, (InfoFrame, StatusFrame)):
                session.on_frame(frame, t_host)
            if observe is not None:
                observe(frame, t_host)
        if detect:
            session.check_samples(t_host)  # bytes without samples count towards "stale" too

    def feed(self, rec: LinkRecordLike) -> None:
        if rec.kind == DATA:
            self.data(rec.t_host, rec.data, getattr(rec, "source", ""))
        elif rec.kind == DOWN:
            self.link_down(rec.t_host)
        elif rec.kind == UP:
            self.link_up(rec.t_host)
        # other kinds (a capture's host WRITE records) do not reach the session

    def finish(self) -> None:
        """End of the stream: the session closes open episodes."""
        self.session.finish()

    # -- counts --------------------------------------------------------------------------------
    @property
    def frames(self) -> int:
        """Frames decoded over all connections."""
        return self._closed_frames + self.decoder.stats.frames

    @property
    def decode_errors(self) -> dict[str, int]:
        """Decode errors by reason over all connections (closed ones plus the current one)."""
        counts = dict(self._closed_errors)
        for reason, n in self.decoder.stats.errors.items():
            counts[reason] = counts.get(reason, 0) + n
        return counts

    @property
    def bad_frames(self) -> int:
        return sum(self.decode_errors.values())


def run_records(loop: DecodeLoop, records: Iterable[LinkRecordLike], *, finish: bool = True) -> DecodeLoop:
    """Feed a finite source (a capture, a batch list) through ``loop``; ``finish`` ends the stream."""
    feed = loop.feed
    for rec in records:
        feed(rec)
    if finish:
        loop.finish()
    return loop
