"""Outputs: encoders (MQTT JSON, line protocol), the router, the durable spool, delivery and sinks."""
