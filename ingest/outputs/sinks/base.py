"""The sink contract and its short exception hierarchy."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self


class SinkError(Exception):
    """A batch was not delivered. ``retry_after`` is the server's wish (seconds), if it said one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkUnavailable(SinkError):
    """Transient: the destination is down, slow or refusing for now. Retry with backoff."""


class SinkRejected(SinkError):
    """Permanent for these records (malformed, refused by schema): never retry them as they are.

    ``bad`` holds the indexes of the rejected records within the batch, when the sink could
    isolate them; the pipeline quarantines exactly those and delivers the rest.
    """

    def __init__(self, message: str, bad: list[int]) -> None:
        super().__init__(message)
        self.bad = bad


class Sink(Protocol):
    """One external destination, used with ``async with``: connect on enter, release on exit."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def send(self, records: list[bytes]) -> None:
        """Deliver ``records`` (sink-specific encoded payloads) or raise a SinkError."""
        ...
