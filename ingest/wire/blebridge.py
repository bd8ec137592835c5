"""The BLE bridge protocol: a virtual BLE link carried between two processes over a Unix socket.

Why it exists: the simulator's virtual BLE radio (``firmware_sim.ble``) is a bleak custom backend,
and a bleak backend only exists inside the process that uses it. ``neurospasm sim --device myo
--ble-socket PATH`` owns the simulated peripheral and listens on ``PATH``; the gateway's bleak
backend ``ingest.sources.blebridge`` connects to it, so another process (``neurospasm run``) drives
the wearable through its real BLE code path: scan, connect, service discovery, ``start_notify``,
``write_gatt_char``, the disconnected callback, reconnects. Both sides import this module and only
this module for the protocol; neither imports the other.

Framing: every message is a 4-byte big-endian length ``N`` (1 .. ``MAX_MESSAGE_BYTES``) followed
by ``N`` bytes of UTF-8 JSON, one object with an ``"op"`` string. Bytes (notification payloads,
writes) travel as lowercase hex strings. A length of 0 or above the limit, bad UTF-8, JSON that is
not an object, an unknown ``op`` or a missing or mistyped field is a ``BridgeProtocolError`` whose
message names the stream offset of the message; a stream that ends inside a message is one too
(``BridgeDecoder.close``). Nothing here blocks or waits: the callers bound their waits.

One socket connection is one central's session with the simulated radio: a scanner or one client.
Requests (central -> simulator) carry an integer ``id``; the simulator answers each with ``ok``
(plus result fields) or ``error`` with the same ``id``. Events carry no ``id``.

==================  =========  ===============================================================
op                  direction  fields
==================  =========  ===============================================================
hello               both       version (int): first message each way; versions must match
scan                request    service_uuids (list of str; empty: every device)
adv                 event      address, name, rssi (int), service_uuids
connect             request    address, timeout_s (float); ok carries name, mtu (int),
                               services (the GATT table, ``services`` below)
disconnect          request    (none): the central leaves; the link is closed
start_notify        request    handle (int): subscribe to a characteristic's notifications
stop_notify         request    handle (int)
write               request    handle (int), data (hex), response (bool)
read                request    handle (int); ok carries data (hex)
notify              event      handle (int), data (hex): one notification
disconnected        event      reason (str): the peripheral dropped the link (out of range, ...)
ok                  reply      id, and the request's results
error               reply      id (int or null), message (str), code: "not_found", "timeout",
                               "busy", "protocol" or "error"
==================  =========  ===============================================================

The GATT table is a list of services ``{"uuid", "handle", "characteristics": [{"uuid", "handle",
"properties": [...], "descriptors": [{"uuid", "handle"}]}]}``, the handles being the simulated
firmware's ATT handles (stable across connections, as a real device's).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ERROR_CODES",
    "MAX_MESSAGE_BYTES",
    "VERSION",
    "BridgeDecoder",
    "BridgeProtocolError",
    "check_message",
    "encode",
    "gatt_table_ok",
    "hexs",
]

#: Protocol version, exchanged in ``hello``. Bump on any incompatible change.
VERSION = 1
#: Longest message accepted. A notification is at most 512 bytes (1 KiB of hex); a GATT table a
#: few KiB. Anything near this limit is a corrupt length, not a message.
MAX_MESSAGE_BYTES = 1 << 20
_HEADER = struct.Struct(">I")

ERROR_CODES = ("not_found", "timeout", "busy", "protocol", "error")

# Required fields of each op and their JSON types (bool is checked apart from int: JSON's true is
# not a handle). "hex" is a string of hex digits, "strs" a list of strings, "table" a GATT table.
_SCHEMA: dict[str, dict[str, str]] = {
    "hello": {"version": "int"},
    "scan": {"id": "int", "service_uuids": "strs"},
    "adv": {"address": "str", "name": "str", "rssi": "int", "service_uuids": "strs"},
    "connect": {"id": "int", "address": "str", "timeout_s": "num"},
    "disconnect": {"id": "int"},
    "start_notify": {"id": "int", "handle": "int"},
    "stop_notify": {"id": "int", "handle": "int"},
    "write": {"id": "int", "handle": "int", "data": "hex", "response": "bool"},
    "read": {"id": "int", "handle": "int"},
    "notify": {"handle": "int", "data": "hex"},
    "disconnected": {"reason": "str"},
    "ok": {"id": "int"},
    "error": {"message": "str", "code": "str"},
}
#: Every op. An ``ok`` may carry more fields than ``id`` (the request's results): its caller checks
#: them (``gatt_table_ok`` for a connect's GATT table).
OPS = tuple(_SCHEMA)


class BridgeProtocolError(ValueError):
    """A message that is not a bridge message; the text names where in the stream it was."""


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "num":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "strs":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "hex":
        if not isinstance(value, str) or len(value) % 2:
            return False
        try:
            bytes.fromhex(value)
        except ValueError:
            return False
        return True
    raise AssertionError(kind)


def check_message(msg: Any, where: str = "message") -> dict[str, Any]:
    """``msg`` if it is a well-formed bridge message, else ``BridgeProtocolError`` naming ``where``."""
    if not isinstance(msg, dict):
        raise BridgeProtocolError(f"{where}: expected a JSON object, got {type(msg).__name__}")
    op = msg.get("op")
    if not isinstance(op, str):
        raise BridgeProtocolError(f"{where}: no 'op' string")
    schema = _SCHEMA.get(op)
    if schema is None:
        raise BridgeProtocolError(f"{where}: unknown op {op[:40]!r} (known: {', '.join(OPS)})")
    for key, kind in schema.items():
        if key not in msg:
            raise BridgeProtocolError(f"{where}: {op} without {key!r}")
        if not _type_ok(msg[key], kind):
            raise BridgeProtocolError(f"{where}: {op}.{key} is not {kind}: {str(msg[key])[:40]!r}")
    if op == "error" and msg["code"] not in ERROR_CODES:
        raise BridgeProtocolError(f"{where}: error.code {msg['code'][:40]!r} is not one of {ERROR_CODES}")
    if op == "error" and not (msg.get("id") is None or _type_ok(msg.get("id"), "int")):
        raise BridgeProtocolError(f"{where}: error.id is neither an integer nor null")
    return msg


def encode(msg: dict[str, Any]) -> bytes:
    """One message on the wire (checked first: a sender's bug is caught where it is made)."""
    check_message(msg, f"outgoing {msg.get('op', '?')}")
    body = json.dumps(msg, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if len(body) > MAX_MESSAGE_BYTES:
        raise BridgeProtocolError(f"outgoing {msg['op']}: {len(body)} bytes exceed {MAX_MESSAGE_BYTES}")
    return _HEADER.pack(len(body)) + body


class BridgeDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get whole checked messages back.

    After a ``BridgeProtocolError`` the stream cannot be trusted (a length prefix has no resync
    point): the caller closes the connection. ``close()`` at end of stream raises if a message
    was cut off.
    """

    def __init__(self, name: str = "bridge") -> None:
        self.name = name
        self._buf = bytearray()
        self.offset = 0  # stream offset of _buf[0]
        self.messages = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= _HEADER.size:
            (n,) = _HEADER.unpack_from(self._buf)
            where = f"{self.name}: message at offset {self.offset}"
            if n == 0 or n > MAX_MESSAGE_BYTES:
                raise BridgeProtocolError(
                    f"{where}: length {n} is not 1..{MAX_MESSAGE_BYTES} (not a bridge stream?)"
                )
            if len(self._buf) < _HEADER.size + n:
                break
            body = bytes(self._buf[_HEADER.size : _HEADER.size + n])
            try:
                obj = json.loads(body.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # (UTF-8 and JSON errors; nesting too deep)
                raise BridgeProtocolError(f"{where}: not UTF-8 JSON ({exc or type(exc).__name__})") from None
            out.append(check_message(obj, where))
            del self._buf[: _HEADER.size + n]
            self.offset += _HEADER.size + n
            self.messages += 1
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buf)

    def close(self) -> None:
        """The stream ended: an error if it ended inside a message."""
        if self._buf:
            want = ""
            if len(self._buf) >= _HEADER.size:
                want = f" of {_HEADER.size + _HEADER.unpack_from(self._buf)[0]}"
            raise BridgeProtocolError(
                f"{self.name}: stream ended inside the message at offset {self.offset} "
                f"({len(self._buf)}{want} bytes)"
            )


def gatt_table_ok(services: Any, where: str = "connect") -> list[dict[str, Any]]:
    """The GATT table of a ``connect`` answer, checked (handles unique, properties strings)."""
    seen: set[int] = set()

    def handle(obj: Any, what: str) -> int:
        if not isinstance(obj, dict) or not isinstance(obj.get("uuid"), str):
            raise BridgeProtocolError(f"{where}: {what} is not an object with a 'uuid'")
        h = obj.get("handle")
        if not isinstance(h, int) or isinstance(h, bool) or h in seen:
            raise BridgeProtocolError(f"{where}: {what} {obj['uuid']}: handle {h!r} missing or repeated")
        seen.add(h)
        return h

    if not isinstance(services, list):
        raise BridgeProtocolError(f"{where}: services is not a list")
    for s in services:
        handle(s, "service")
        chars = s.get("characteristics")
        if not isinstance(chars, list):
            raise BridgeProtocolError(f"{where}: service {s['uuid']}: characteristics is not a list")
        for c in chars:
            handle(c, "characteristic")
            if not _type_ok(c.get("properties"), "strs"):
                raise BridgeProtocolError(f"{where}: characteristic {c['uuid']}: properties not strings")
            descs = c.get("descriptors", [])
            if not isinstance(descs, list):
                raise BridgeProtocolError(f"{where}: characteristic {c['uuid']}: descriptors not a list")
            for d in descs:
                handle(d, "descriptor")
    return services


def hexs(data: bytes | bytearray | Iterable[int]) -> str:
    """Bytes as the protocol's hex string."""
    return bytes(data).hex()
