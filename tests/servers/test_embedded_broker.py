"""The demo's embedded broker (amqtt) survives subscribes racing a client's connect.

amqtt 0.12 walks its subscription table with awaits inside the loop when a client connects (to
send retained messages); another client subscribing to a new filter meanwhile used to raise
``dictionary changed size during iteration`` and drop the connecting client. The demo runs its
dashboard, gateway and subscriber against this broker, so that was a visible reconnect.
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import pytest

from ingest.commands.demo import start_broker
from tests.support.servers import free_port


async def test_subscribes_racing_connects_drop_no_client(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    broker = await start_broker(port)
    crashes: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _l, ctx: crashes.append(repr(ctx.get("exception") or ctx["message"])))
    try:
        async with aiomqtt.Client("127.0.0.1", port, identifier="retainer") as c:
            for i in range(20):
                await c.publish(f"t/{i}", b"x" * 64, qos=1, retain=True)

        async def subscriber(k: int) -> None:
            async with aiomqtt.Client("127.0.0.1", port, identifier=f"sub-{k}") as c:
                for i in range(60):
                    await c.subscribe(f"t/{k}/{i}/#", qos=1)
                    await asyncio.sleep(0.002)

        got: list[int] = []

        async def connector(k: int) -> None:
            for i in range(8):
                async with aiomqtt.Client("127.0.0.1", port, identifier=f"conn-{k}-{i}") as c:
                    await c.subscribe("t/#", qos=1)
                    n = 0
                    async with asyncio.timeout(10):
                        async for _ in c.messages:
                            n += 1
                            if n == 20:
                                break
                    got.append(n)

        with caplog.at_level(logging.WARNING):
            await asyncio.gather(*(subscriber(k) for k in range(2)), *(connector(k) for k in range(2)))
    finally:
        await broker.shutdown()
    assert not crashes
    assert not [r for r in caplog.records if "changed size" in (r.getMessage() + str(r.exc_info))]
    assert got == [20] * 16  # every connecting client got every retained message, none dropped
