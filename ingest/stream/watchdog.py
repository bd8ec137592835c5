"""systemd's notify protocol, without a dependency: datagrams to ``$NOTIFY_SOCKET``.

The service unit (``Type=notify``, ``WatchdogSec=30``) learns from ``READY=1`` that the gateway is
up, and from ``WATCHDOG=1`` that it is still doing its job. The gateway sends ``WATCHDOG=1`` only
while every device pipeline makes real progress (samples through the detector, or a deliberate
wait: disconnected, backing off after a failure, refused). A wedged process stops petting the
watchdog, and systemd restarts it: a living but useless process is the silent failure we refuse.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

__all__ = ["Notifier"]


class Notifier:
    """Sends sd_notify messages. ``path`` defaults to ``$NOTIFY_SOCKET`` (``@`` = abstract)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get("NOTIFY_SOCKET", "")
        usec = os.environ.get("WATCHDOG_USEC", "")
        #: systemd's watchdog timeout, if it set one for us (we pet at a third of it).
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False
        #: Pets more often than this are skipped: systemd needs one per WatchdogSec/2 at most.
        self.pet_interval_s = min(5.0, max(0.5, self.watchdog_s / 4)) if self.watchdog_s else 1.0
        self._last_pet = -1e9

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def send(self, message: str) -> bool:
        """One datagram; False (logged once) when it cannot be sent. Never raises."""
        if not self.path:
            return False
        addr = "\0" + self.path[1:] if self.path.startswith("@") else self.path
        try:
            if self._sock is None:
                # Non-blocking: a receiver that stops reading must never stall the event loop
                # (that would stop the gateway from even handling SIGTERM).
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(message.encode(), addr)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.path, exc.strerror or exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        """Pet the watchdog (at most every ``pet_interval_s``; False when skipped or not sent)."""
        now = time.monotonic()
        if now - self._last_pet < self.pet_interval_s:
            return False
        self._last_pet = now
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
