"""Wire protocols: the bytes a wearable sends and the decoders that turn them into frames.

Pure code (no I/O, no asyncio), so the simulator can import the protocol definitions without
pulling in the gateway.
"""
