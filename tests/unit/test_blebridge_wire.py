"""The BLE bridge codec (``ingest.wire.blebridge``): framing, checks, and garbage in any shape."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.wire.blebridge import (
    MAX_MESSAGE_BYTES,
    BridgeDecoder,
    BridgeProtocolError,
    check_message,
    encode,
    gatt_table_ok,
)

MESSAGES = [
    {"op": "hello", "version": 1},
    {"op": "scan", "id": 1, "service_uuids": []},
    {"op": "adv", "address": "C0:FF:EE:00:00:01", "name": "Myo", "rssi": -60, "service_uuids": ["abcd"]},
    {"op": "connect", "id": 2, "address": "C0:FF:EE:00:00:01", "timeout_s": 2.5},
    {"op": "start_notify", "id": 3, "handle": 17},
    {"op": "write", "id": 4, "handle": 20, "data": "0103010100", "response": True},
    {"op": "notify", "handle": 17, "data": "00" * 244},
    {"op": "disconnected", "reason": "out of range"},
    {"op": "ok", "id": 2, "name": "Myo", "mtu": 247, "services": []},
    {"op": "error", "id": None, "code": "protocol", "message": "bad"},
]


def raw(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_round_trip_byte_by_byte() -> None:
    wire = b"".join(encode(m) for m in MESSAGES)
    dec = BridgeDecoder()
    out = []
    for i in range(len(wire)):  # the worst split: one byte at a time
        out += dec.feed(wire[i : i + 1])
    assert out == MESSAGES
    assert dec.pending == 0 and dec.offset == len(wire)
    dec.close()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00\x00\x00\x00", "length 0 is not"),
        (struct.pack(">I", MAX_MESSAGE_BYTES + 1), f"length {MAX_MESSAGE_BYTES + 1} is not"),
        (b"GET / HTTP/1.1\r\n", "is not 1.."),  # someone else's protocol: a huge length
        (raw(b"\xff\xfe"), "not UTF-8 JSON"),
        (raw(b"{not json"), "not UTF-8 JSON"),
        (raw(b"[1, 2]"), "expected a JSON object, got list"),
        (raw(b'{"id": 1}'), "no 'op' string"),
        (raw(b'{"op": "launch"}'), "unknown op 'launch'"),
        (
            raw(b'{"op": "write", "id": 1, "handle": 2, "data": "0g", "response": true}'),
            "write.data is not hex",
        ),
        (
            raw(b'{"op": "write", "id": 1, "handle": 2, "data": "abc", "response": true}'),
            "write.data is not hex",
        ),
        (raw(b'{"op": "notify", "handle": true, "data": ""}'), "notify.handle is not int"),
        (raw(b'{"op": "connect", "id": 1, "address": "x"}'), "connect without 'timeout_s'"),
        (raw(b'{"op": "error", "id": "7", "code": "error", "message": "m"}'), "error.id"),
        (raw(b'{"op": "error", "id": 1, "code": "oops", "message": "m"}'), "error.code 'oops'"),
    ],
)
def test_garbage_is_one_clear_error_naming_the_offset(data: bytes, words: str) -> None:
    good = encode({"op": "hello", "version": 1})
    dec = BridgeDecoder("bridge /tmp/x.sock")
    with pytest.raises(BridgeProtocolError) as err:
        dec.feed(good + data)
    text = str(err.value)
    assert words in text and f"message at offset {len(good)}" in text and "bridge /tmp/x.sock" in text
    assert "\n" not in text


def test_a_stream_that_ends_inside_a_message_is_an_error() -> None:
    wire = encode({"op": "notify", "handle": 17, "data": "0102"})
    dec = BridgeDecoder()
    assert dec.feed(wire[:-3]) == []
    with pytest.raises(
        BridgeProtocolError, match=r"ended inside the message at offset 0 \(\d+ of \d+ bytes\)"
    ):
        dec.close()
    dec = BridgeDecoder()
    dec.feed(wire[:2])  # not even a whole length prefix
    with pytest.raises(BridgeProtocolError, match=r"\(2 bytes\)"):
        dec.close()


def test_encode_refuses_what_the_peer_would_refuse() -> None:
    with pytest.raises(BridgeProtocolError, match=r"outgoing write: write\.data is not hex"):
        encode({"op": "write", "id": 1, "handle": 2, "data": "zz", "response": False})
    with pytest.raises(BridgeProtocolError, match="exceed"):
        encode({"op": "notify", "handle": 1, "data": "00" * (MAX_MESSAGE_BYTES // 2)})


def test_gatt_table_checks() -> None:
    table = [{"uuid": "s", "handle": 16, "characteristics": [
        {"uuid": "c", "handle": 17, "properties": ["notify"], "descriptors": [{"uuid": "d", "handle": 19}]},
    ]}]  # fmt: skip
    assert gatt_table_ok(table) == table
    dup = json.loads(json.dumps(table))
    dup[0]["characteristics"][0]["descriptors"][0]["handle"] = 17
    with pytest.raises(BridgeProtocolError, match="handle 17 missing or repeated"):
        gatt_table_ok(dup)
    with pytest.raises(BridgeProtocolError, match="services is not a list"):
        gatt_table_ok({"uuid": "s"})
    bad = json.loads(json.dumps(table))
    bad[0]["characteristics"][0]["properties"] = "notify"
    with pytest.raises(BridgeProtocolError, match="properties not strings"):
        gatt_table_ok(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
def test_random_bytes_give_messages_or_the_documented_error_only(data: bytes, chunk: int) -> None:
    dec = BridgeDecoder()
    try:
        for i in range(0, len(data), chunk):
            for msg in dec.feed(data[i : i + chunk]):
                assert check_message(msg) is msg
        dec.close()
    except BridgeProtocolError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=5),
        max_leaves=12,
    )
)
def test_any_json_is_a_message_or_the_documented_error(obj: object) -> None:
    for candidate in (obj, {"op": "write", **obj} if isinstance(obj, dict) else obj):
        body = json.dumps(candidate).encode()
        try:
            BridgeDecoder().feed(raw(body))
        except BridgeProtocolError:
            pass
