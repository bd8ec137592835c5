"""The gateway: every byte of I/O between the wearable and the sinks.

Transports (serial, BLE, replay) yield raw frames; ``protocol`` decodes them; the per-device
pipeline fits the clock, runs the detectors and hands batches to the sinks (MQTT, InfluxDB,
local storage) through a durable spool. Configuration and the CLI live here too.
"""

__version__ = "0.1.0"
