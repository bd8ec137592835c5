"""The gateway's stop names what it waits for: a task that does not let go of a cancellation is
logged with the line it waits at, and the stop still waits for it (nothing is abandoned)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ingest.stream import runner


async def _stubborn(release: asyncio.Event, finished: list[str]) -> None:
    """A task that, cancelled, still finishes its own work first (a sink flushing, say)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await release.wait()
        finished.append("stubborn")
        raise


def test_a_slow_task_is_named_in_the_log_and_still_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[str]:
        finished: list[str] = []
        release = asyncio.Event()
        quick = asyncio.create_task(asyncio.sleep(3600), name="delivery-quick")
        slow = asyncio.create_task(_stubborn(release, finished), name="device-slow")
        await asyncio.sleep(0)
        for t in (quick, slow):
            t.cancel()
        asyncio.get_running_loop().call_later(0.3, release.set)
        await runner._join([quick, slow], "the device pipelines", warn_after_s=0.05)
        assert quick.cancelled() and slow.done()
        return finished

    with caplog.at_level(logging.WARNING, logger="ingest.stream.runner"):
        finished = asyncio.run(scenario())
    assert finished == ["stubborn"]  # waited for, not abandoned
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "the device pipelines" in warnings[0]
    assert "device-slow at test_gateway_stop.py:" in warnings[0] and "_stubborn" in warnings[0]
    assert "delivery-quick" not in warnings[0]  # only what is still running is named


def test_a_failure_on_the_way_out_is_retrieved_not_left_unread() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("sink broke while closing") from None

    async def scenario() -> asyncio.Task[None]:
        t = asyncio.create_task(failing(), name="delivery-broken")
        await asyncio.sleep(0)
        t.cancel()
        await runner._join([t], "its tasks", warn_after_s=1.0)
        return t

    t = asyncio.run(scenario())
    assert isinstance(t.exception(), RuntimeError)


def test_an_outer_cancellation_is_not_swallowed() -> None:
    """The old ``suppress(CancelledError)`` around each await also hid a cancellation of the
    stop itself; waiting with ``asyncio.wait`` lets it through."""

    async def scenario() -> None:
        inner = asyncio.create_task(asyncio.sleep(3600))
        stop = asyncio.create_task(runner._join([inner], "its tasks", warn_after_s=10))
        await asyncio.sleep(0.01)
        stop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stop
        inner.cancel()

    asyncio.run(scenario())
