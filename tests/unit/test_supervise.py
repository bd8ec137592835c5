"""The one supervision loop (gateway device runners and worker sessions): fail, show, restart."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ingest.outputs.delivery import Backoff
from ingest.stream.supervisor import LastSample, PendingGap, Progress, restart_gap, supervise


def test_failures_are_shown_logged_once_per_cause_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    causes = [ValueError("bad frame"), ValueError("bad frame"), KeyError("x")]
    calls: list[str] = []

    async def run() -> None:
        calls.append("run")
        if causes:
            raise causes.pop(0)  # the last run returns: a finite source ended

    async def main() -> None:
        with caplog.at_level(logging.ERROR, logger="ingest.stream.supervisor"):
            await supervise(
                "dev-a",
                run,
                failed=lambda cause: calls.append(f"failed {cause}"),
                restart=lambda: calls.append("restart"),
                backoff=Backoff(0.001, 0.002),
            )

    asyncio.run(main())
    assert calls == [
        "run", "failed ValueError: bad frame", "restart",
        "run", "failed ValueError: bad frame", "restart",
        "run", "failed KeyError: 'x'", "restart",
        "run",
    ]  # fmt: skip
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("device dev-a: pipeline failed (ValueError: bad frame); restarting in")
    assert caplog.records[0].exc_info is not None  # the traceback, the first time a cause is seen
    assert "failed again (ValueError: bad frame, 2 times)" in lines[1] and caplog.records[1].exc_info is None
    assert lines[2].startswith("device dev-a: pipeline failed (KeyError: 'x')")


def test_cancellation_is_never_taken_for_a_failure() -> None:
    shown: list[str] = []

    async def run() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(
            supervise("d", run, failed=shown.append, restart=lambda: None, backoff=Backoff(0.001, 0.002))
        )
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert shown == []


def test_the_restart_gap_starts_where_the_failed_pipeline_stopped() -> None:
    assert restart_gap(None) is None
    fresh = Progress("d", lambda _o: None)
    assert restart_gap(fresh) is None  # no sample yet: nothing lost that is known
    earlier = PendingGap("gateway_restart", LastSample(100.0, 1, 5000, 1000.0))
    assert restart_gap(Progress("d", lambda _o: None, pending=earlier)) is earlier  # still owed
