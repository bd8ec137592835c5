"""Every device kind the gateway can decode: importing this module registers them all.

Add a vendor decoder by writing ``ingest/wire/<vendor>.py`` (it calls
``ingest.wire.base.register_decoder`` at import) and importing it here.
"""

from __future__ import annotations

from ingest.wire import myo, polar  # noqa: F401  (register the BLE wearables' decoders)
from ingest.wire.base import DECODERS, decoder_for, device_kinds

__all__ = ["DECODERS", "decoder_for", "device_kinds"]
