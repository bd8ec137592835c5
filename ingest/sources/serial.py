"""Serial transport (USB CDC or UART wearables) on pyserial, driven by the asyncio event loop.

pyserial is used in non-blocking mode and its file descriptor is watched with
``loop.add_reader``, so no thread is needed and the read callback stamps arrival time at once.
POSIX only (the gateway is a Linux box).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import serial
from serial.tools import list_ports

from ingest.sources.base import Transport, TransportClosed, TransportError


def find_port(vid: int, pid: int, serial_number: str | None = None) -> str:
    """Resolve a USB vendor/product id (and optional serial number) to a device path."""
    for port in list_ports.comports():
        if port.vid == vid and port.pid == pid and (serial_number in (None, port.serial_number)):
            return str(port.device)
    raise TransportError(f"no serial port with USB id {vid:04x}:{pid:04x}")


@dataclass
class SerialTransport(Transport):
    """A wearable on a serial port. ``port`` is a path; or give ``usb_vid``/``usb_pid``."""

    port: str = ""
    baudrate: int = 921600
    usb_vid: int | None = None
    usb_pid: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._serial: serial.Serial | None = None

    async def _open(self) -> None:
        path = self.port
        if not path:
            if self.usb_vid is None or self.usb_pid is None:
                raise TransportError("serial transport needs a port path or usb_vid and usb_pid")
            path = find_port(self.usb_vid, self.usb_pid)
        try:
            ser = serial.Serial(path, self.baudrate, timeout=0, write_timeout=1.0, exclusive=True)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"cannot open serial port {path}: {exc}") from exc
        self._serial = ser
        ser.reset_input_buffer()
        asyncio.get_running_loop().add_reader(ser.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        ser = self._serial
        if ser is None:
            return
        try:
            data = ser.read(max(ser.in_waiting, 1))
        except (serial.SerialException, OSError) as exc:
            self._detach()
            self._lost(TransportClosed(f"serial port {ser.port} lost: {exc}"))
            return
        if data:
            self._received(data)

    def _detach(self) -> None:
        ser = self._serial
        if ser is None:
            return
        try:
            asyncio.get_running_loop().remove_reader(ser.fileno())
        except (ValueError, OSError):
            pass

    async def _close(self) -> None:
        ser = self._serial
        self._detach()
        self._serial = None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass

    async def write(self, data: bytes, char_uuid: str | None = None) -> None:
        ser = self._serial
        if ser is None:
            raise TransportClosed("serial port is not open")
        try:
            ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise TransportClosed(f"write to {ser.port} failed: {exc}") from exc
