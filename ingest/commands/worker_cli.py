"""``neurospasm worker`` on the command line (the worker itself: ``ingest.commands.worker``).

Kept apart so that building the parser does not import aiomqtt and pydantic.
"""

from __future__ import annotations

import argparse
from typing import Any


def _handler(args: argparse.Namespace) -> int:
    import asyncio

    from ingest.commands.worker import run_worker

    return asyncio.run(run_worker(args.config))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run detectors centrally on frames gateways publish over MQTT (docs/scaling.md)",
        description=(
            "Lease devices from the gateways' announces (a shared subscription), run the gateway's own "
            "decode loop, session and detector on their frames, and publish onsets, events, gaps, status "
            "and live with the usual schemas and ids. Design: docs/scaling.md."
        ),
    )
    p.add_argument("--config", "-c", required=True, help="worker TOML (see deploy/worker.example.toml)")
    p.set_defaults(handler=_handler)
