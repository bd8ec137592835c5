"""Every device kind the gateway can decode: importing this module registers them all.

Add a vendor decoder by writing ``ingest/wire/<vendor>.py`` (it calls
``ingest.wire.base.register_decoder`` at import) and importing it here.
"""

from __future__ import annotations

from ingest.wire import bitalino as _bitalino  # noqa: F401  (registers "bitalino")
from ingest.wire import cyton as _cyton  # noqa: F401  (registers "cyton")
from ingest.wire import shimmer as _shimmer  # noqa: F401  (registers "shimmer")
from ingest.wire.base import DECODERS, decoder_for, device_kinds

__all__ = ["DECODERS", "decoder_for", "device_kinds"]
