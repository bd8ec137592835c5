"""Sinks write batches to one destination and raise on failure; nothing more.

Buffering, retry, backoff and the durable spool belong to the pipeline (``ingest.outputs.delivery``):
"the output writes, the agent buffers and retries". So a sink is small, and every sink behaves
the same under an outage.
"""

from ingest.outputs.sinks.base import Sink, SinkError, SinkRejected, SinkUnavailable

__all__ = ["Sink", "SinkError", "SinkRejected", "SinkUnavailable"]
