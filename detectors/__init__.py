"""Streaming spasm detectors: pure numpy/scipy, no I/O, no asyncio, no clock reads.

State is carried across chunks, so the events are the same whatever chunk sizes the detector is
fed: live from a wearable, on a replay, or offline on a file.
"""

from detectors.config import ConfigError, DetectorConfig
from detectors.detector import SpasmDetector
from detectors.events import (
    ACTIVITY_KINDS,
    SPASM_TYPES,
    ActivityChange,
    ActivityKind,
    ActivitySpan,
    DetectorOutput,
    Onset,
    QualityChange,
    SpasmEvent,
    SpasmType,
)

__all__ = [
    "ACTIVITY_KINDS",
    "SPASM_TYPES",
    "ActivityChange",
    "ActivityKind",
    "ActivitySpan",
    "ConfigError",
    "DetectorConfig",
    "DetectorOutput",
    "Onset",
    "QualityChange",
    "SpasmDetector",
    "SpasmEvent",
    "SpasmType",
]
