"""The simulated wearable: signal synthesis, labelled scenarios, faults and the device end of the
wire protocol (served over a pseudo-terminal or as a virtual BLE peripheral).

It imports the protocol definition (``ingest.wire.protocol``), never the gateway's pipeline.
"""
