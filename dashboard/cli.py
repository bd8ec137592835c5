"""``neurospasm dashboard``: the clinician's web application, and ``neurospasm dashboard adduser``.

    neurospasm dashboard --config dashboard.toml
    neurospasm dashboard --mqtt-host 127.0.0.1 --store sqlite:/var/lib/neurospasm/history.sqlite
    neurospasm dashboard adduser --users users.json --site clinic-a dr-07     (asks for the password)

Registered by ``ingest.commands.cli`` (``COMMAND_MODULES``): the command line is the composition root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("neurospasm.dashboard")

__all__ = ["register", "serve"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard",
        help="the clinician's web application (live view, timeline, review, trends, report)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", help="TOML file with a [dashboard] table (see docs/dashboard.md)")
    p.add_argument(
        "--bind", help="HOST:PORT to listen on (default 127.0.0.1:8080; non-loopback needs --users)"
    )
    p.add_argument("--mqtt-host", help="MQTT broker host (default 127.0.0.1)")
    p.add_argument("--mqtt-port", type=int, help="MQTT broker port (default 1883)")
    p.add_argument("--topic-prefix", help="MQTT topic prefix (default neurospasm/v1)")
    p.add_argument(
        "--store", help="history store: sqlite:PATH or influx:URL (e.g. influx:http://db:8086/neurospasm)"
    )
    p.add_argument("--users", help="users file (JSON, created by `dashboard adduser`)")
    p.add_argument("--state-dir", help="where reviews, notices and acknowledgements are kept")
    p.add_argument("--stale-after", type=float, help="seconds without data before 'monitoring inactive'")
    p.add_argument("--site", help="site of store devices whose site the store does not record")
    p.add_argument("--timezone", help="the site's IANA time zone for days and nights (default UTC)")
    p.set_defaults(handler=_serve_cmd)
    actions = p.add_subparsers(dest="dashboard_action")
    add = actions.add_parser(
        "adduser", help="create or update a dashboard user (password hashed with scrypt)"
    )
    add.add_argument("username", help="a staff pseudonym, e.g. dr-07")
    add.add_argument("--users", required=True, help="users file to create or update")
    add.add_argument("--site", required=True, help="the site this user may see, or '*' for all sites")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (scripts)"
    )
    add.set_defaults(handler=_adduser_cmd)


def _adduser_cmd(args: argparse.Namespace) -> int:
    from dashboard.app.auth import AuthError, UserStore

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            print("neurospasm dashboard adduser: passwords differ", file=sys.stderr)
            return 2
    try:
        UserStore(Path(args.users)).add(args.username, password, args.site)
    except AuthError as exc:
        print(f"neurospasm dashboard adduser: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.username} (site {args.site}) saved in {args.users}")
    return 0


def _serve_cmd(args: argparse.Namespace) -> int:
    from dashboard.app.config import DashboardConfigError, load_dashboard_config

    try:
        cfg = load_dashboard_config(
            args.config,
            {
                "bind": args.bind,
                "store": args.store,
                "users_file": args.users,
                "state_dir": args.state_dir,
                "stale_after_s": args.stale_after,
                "default_site": args.site,
                "timezone": args.timezone,
                "mqtt.host": args.mqtt_host,
                "mqtt.port": args.mqtt_port,
                "mqtt.topic_prefix": args.topic_prefix,
            },
        )
    except DashboardConfigError as exc:
        print(f"neurospasm dashboard: {exc}", file=sys.stderr)
        return 2
    from dashboard.app.auth import AuthError

    try:
        return asyncio.run(serve(cfg))
    except (ValueError, AuthError) as exc:
        print(f"neurospasm dashboard: {exc}", file=sys.stderr)
        return 2


async def serve(cfg: Any, stop: asyncio.Event | None = None, url_file: str | None = None) -> int:
    """Run the dashboard until ``stop`` is set (or SIGINT / SIGTERM). Prints its URL."""
    import uvicorn

    from dashboard.app.server import create_app

    class _Server(uvicorn.Server):
        # We own SIGINT/SIGTERM (the demo runs the dashboard beside the gateway): uvicorn must
        # neither take them nor re-raise them after shutdown.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    app = create_app(cfg)
    server = _Server(
        uvicorn.Config(
            app,
            host=cfg.host,
            port=cfg.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            # a request still running this long after the stop began is cancelled (the live
            # streams are ended first, below): a stop never waits on a browser
            timeout_graceful_shutdown=5,
        )
    )
    own_stop = stop is None
    stop = stop or asyncio.Event()
    if own_stop:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn offers no started event)
        await asyncio.sleep(0.05)
    if task.done():
        task.result()
        return 1
    url = dashboard_url(cfg)
    print(f"neurospasm dashboard: {url}", flush=True)
    target = url_file or os.environ.get("NEUROSPASM_DASHBOARD_URL_FILE")
    if target:
        Path(target).write_text(url + "\n")  # noqa: ASYNC240 (a few bytes, once)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    app.state.dashboard.hub.close_streams()  # open browser tabs hold live streams that never end
    server.should_exit = True
    waiter.cancel()
    await task
    return 0


def dashboard_url(cfg: Any) -> str:
    host = cfg.host if cfg.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.port}/"
