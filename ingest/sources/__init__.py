"""Transports move raw bytes between the gateway and a wearable; they know nothing about EMG.

Every transport has the same small contract (``base.Transport``), so the pipeline is identical
for serial, BLE and replayed captures, and tests fake exactly one seam: the device.
"""

from ingest.sources.base import Chunk, Transport, TransportClosed, TransportError

__all__ = ["Chunk", "Transport", "TransportClosed", "TransportError"]
