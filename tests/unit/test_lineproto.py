"""Tests of the bulk line-protocol encoder: escaping, validation, NaN handling, parity with Point."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from ingest.outputs.lineproto import encode_columns, encode_point

T0 = 1_700_000_000_000_000_000


# ------------------------------------------------------------------------------------ reference parser


def _read_escaped(line: str, i: int, stops: str, escapable: str = ",= ") -> tuple[str, int]:
    """Read up to an unescaped character in ``stops``.

    As InfluxDB's parser does: a backslash escapes the next character only if that one is special in
    this element; any other backslash is a literal character.
    """
    out = []
    while i < len(line) and line[i] not in stops:
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in escapable:
            out.append(line[i + 1])
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out), i


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """A small, independent line-protocol parser (the subset we emit)."""
    meas, i = _read_escaped(line, 0, ", ", escapable=", ")
    tags: dict[str, str] = {}
    while line[i] == ",":
        key, i = _read_escaped(line, i + 1, "=")
        value, i = _read_escaped(line, i + 1, ", ")
        tags[key] = value
    assert line[i] == " "
    i += 1
    fields: dict[str, object] = {}
    while True:
        key, i = _read_escaped(line, i, "=")
        i += 1
        if line[i] == '"':
            j = i + 1
            chars = []
            while line[j] != '"':
                if line[j] == "\\":
                    j += 1
                chars.append(line[j])
                j += 1
            fields[key] = "".join(chars)
            i = j + 1
        else:
            j = i
            while line[j] not in ", ":
                j += 1
            raw = line[i:j]
            if raw in ("true", "false"):
                fields[key] = raw == "true"
            elif raw.endswith("i"):
                fields[key] = int(raw[:-1])
            else:
                fields[key] = float(raw)
            i = j
        if line[i] == " ":
            break
        i += 1
    ts = int(line[i + 1 :])
    return meas, tags, fields, ts


def lines(data: bytes) -> list[str]:
    assert data == b"" or data.endswith(b"\n")
    return data.decode().split("\n")[:-1] if data else []


# ------------------------------------------------------------------------------------------ escaping


def test_escaping_of_every_element() -> None:
    out = encode_point(
        "emg env,x=1",
        {"dev ice": "a,b=c d", "z": "1"},
        {"my field,=": 1.5, "note": 'say "hi" \\ there', "n": 3, "ok": True},
        T0,
    )
    assert out == (
        b"emg\\ env\\,x=1,dev\\ ice=a\\,b\\=c\\ d,z=1 "
        b'my\\ field\\,\\==1.5,n=3i,note="say \\"hi\\" \\\\ there",ok=true 1700000000000000000\n'
    )
    meas, tags, fields, ts = parse_line(out.decode().rstrip("\n"))
    assert meas == "emg env,x=1"
    assert tags == {"dev ice": "a,b=c d", "z": "1"}
    assert fields == {"my field,=": 1.5, "note": 'say "hi" \\ there', "n": 3, "ok": True}
    assert ts == T0


def test_columns_escape_like_points() -> None:
    out = encode_columns("m m", {"t,k": "v=v"}, {"f f": np.array([1.0, 2.5])}, np.array([1, 2]))
    assert lines(out) == ["m\\ m,t\\,k=v\\=v f\\ f=1 1", "m\\ m,t\\,k=v\\=v f\\ f=2.5 2"]


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "match"),
    [
        ("m", {"device": "a\nb"}, {"x": 1.0}, "value of tag 'device'"),
        ("m", {"device": ""}, {"x": 1.0}, "value of tag 'device' must not be empty"),
        ("m", {"dev\tice": "a"}, {"x": 1.0}, "tag key 'dev\\\\tice'"),
        ("m", {"device": "trailing\\"}, {"x": 1.0}, "backslash"),
        ("#m", {}, {"x": 1.0}, "comment"),
        ("", {}, {"x": 1.0}, "measurement must not be empty"),
        ("m", {}, {"bad\rkey": 1.0}, "field key 'bad\\\\rkey'"),
        ("m", {}, {"note": "two\nlines"}, "string value of field 'note'"),
        ("m", {}, {"big": 2**63}, "field 'big'"),
    ],
)
def test_invalid_input_names_the_key(
    measurement: str, tags: dict[str, str], fields: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        encode_point(measurement, tags, fields, T0)
    if not any(isinstance(v, str) or isinstance(v, int) for v in fields.values()):
        with pytest.raises(ValueError, match=match):
            encode_columns(measurement, tags, {k: np.array([v]) for k, v in fields.items()}, np.array([T0]))


def test_column_validation_names_the_field() -> None:
    ts = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="field 'b' has shape"):
        encode_columns("m", {}, {"a": np.zeros(3), "b": np.zeros(2)}, ts)
    with pytest.raises(ValueError, match="field 'u'"):
        encode_columns("m", {}, {"u": np.array([1, 2, 2**63], dtype=np.uint64)}, ts)
    with pytest.raises(TypeError, match="field 'c'"):
        encode_columns("m", {}, {"c": np.zeros(3, dtype=np.complex128)}, ts)
    with pytest.raises(ValueError, match="timestamps_ns"):
        encode_columns("m", {}, {"a": np.zeros(3)}, np.zeros(3))
    with pytest.raises(ValueError, match="at least one field"):
        encode_columns("m", {}, {}, ts)
    with pytest.raises(TypeError, match="field 'd'"):
        encode_point("m", {}, {"d": [1, 2]}, 0)  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------ NaN / inf


def test_non_finite_fields_are_left_out_and_empty_lines_dropped() -> None:
    a = np.array([1.0, np.nan, np.inf, np.nan, 5.0])
    b = np.array([2.0, 3.0, 4.0, -np.inf, np.nan])
    out = encode_columns("m", {"d": "x"}, {"a": a, "b": b}, np.arange(5))
    assert lines(out) == ["m,d=x a=1,b=2 0", "m,d=x b=3 1", "m,d=x b=4 2", "m,d=x a=5 4"]
    assert encode_point("m", {}, {"a": math.nan, "b": math.inf}, 1) == b""
    assert encode_point("m", {}, {"a": math.nan, "b": 2}, 1) == b"m b=2i 1\n"


def test_nan_with_fixed_decimals() -> None:
    out = encode_columns(
        "m", {}, {"a": np.array([np.nan, 1.25]), "b": np.array([0.5, np.nan])}, [1, 2], decimals=1
    )
    assert lines(out) == ["m b=0.5 1", "m a=1.2 2"]  # 1.25 rounds half to even


def test_empty_block_is_empty_bytes() -> None:
    assert encode_columns("m", {}, {"a": np.zeros(0)}, np.zeros(0, dtype=np.int64)) == b""


# ------------------------------------------------------------------------------------------ numbers


def test_fixed_decimals_text() -> None:
    x = np.array([0.0, -0.0, -0.0004, 12.3456, -12.3456, 100.0, 0.1, 999.9996, -5e-3, 7.0])
    out = encode_columns("m", {}, {"v": x}, np.arange(len(x)), decimals=3)
    values = [line.split(" ")[1].removeprefix("v=") for line in lines(out)]
    assert values == ["0", "0", "0", "12.346", "-12.346", "100", "0.1", "1000", "-0.005", "7"]


def test_fixed_decimals_fall_back_to_exact_text_for_huge_values() -> None:
    x = np.array([1e300, 1.5])
    out = encode_columns("m", {}, {"v": x}, [1, 2], decimals=4)
    assert lines(out) == ["m v=1e+300 1", "m v=1.5 2"]


def test_per_field_decimals_and_other_dtypes() -> None:
    out = encode_columns(
        "acc",
        {"device": "d1"},
        {
            "x": np.array([0.123456, -1.0]),
            "n": np.array([-3, 40], dtype=np.int16),
            "u": np.array([7, 2**63 - 1], dtype=np.uint64),
            "ok": np.array([True, False]),
            "s": np.array(['a "q"', None], dtype=object),
        },
        np.array(["2023-11-14T22:13:20", "2023-11-14T22:13:21"], dtype="datetime64[s]"),
        decimals={"x": 2},
    )
    assert lines(out) == [
        'acc,device=d1 n=-3i,ok=true,s="a \\"q\\"",u=7i,x=0.12 1700000000000000000',
        "acc,device=d1 n=40i,ok=false,u=9223372036854775807i,x=-1 1700000001000000000",
    ]


def test_fixed_decimals_round_trip_within_half_a_step() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(scale=1000.0, size=5000) * rng.choice([1e-3, 1.0, 1e3], size=5000)
    ts = T0 + np.arange(5000, dtype=np.int64) * 20_000_000
    for d in (0, 2, 5):
        parsed = [parse_line(line) for line in lines(encode_columns("m", {}, {"v": x}, ts, decimals=d))]
        got = np.array([p[2]["v"] for p in parsed], dtype=float)
        assert np.all(np.abs(got - x) <= 0.5 * 10.0**-d * (1 + 1e-9) + 1e-9 * np.abs(x))
        assert [p[3] for p in parsed] == ts.tolist()


# ------------------------------------------------------------------------------------------ Point parity

_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\t\x00"),
    min_size=1,
    max_size=8,
).filter(lambda s: not s.endswith("\\"))
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=60, deadline=None)
@given(
    tags=st.dictionaries(_text, _text, max_size=3),
    float_keys=st.lists(_text, min_size=1, max_size=3, unique=True),
    n=st.integers(1, 20),
    data=st.data(),
)
def test_columns_equal_point_output(
    tags: dict[str, str], float_keys: list[str], n: int, data: st.DataObject
) -> None:
    fields: dict[str, np.ndarray] = {
        k: np.array(data.draw(st.lists(_floats, min_size=n, max_size=n)), dtype=np.float64)
        for k in float_keys
    }
    if data.draw(st.booleans()):
        fields["count" if "count" not in fields else "count2"] = np.array(
            data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), dtype=np.int64
        )
    ts = np.array(data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)), dtype=np.int64)
    measurement = data.draw(_text.filter(lambda s: not s.startswith("#")))
    ours = lines(encode_columns(measurement, tags, fields, ts))
    expected = []
    for i in range(n):
        p = Point(measurement)
        for k, v in tags.items():
            p = p.tag(k, v)
        for k, col in fields.items():
            p = p.field(k, col[i].item())
        line = p.time(int(ts[i])).to_line_protocol()
        if line:
            expected.append(line)
    assert ours == expected
    kept = [i for i in range(n) if any(np.isfinite(col[i]) for col in fields.values())]
    assert len(kept) == len(ours)
    for i, line in zip(kept, ours, strict=True):  # and an independent parser reads back what went in
        meas, got_tags, got_fields, got_ts = parse_line(line)
        assert (meas, got_tags, got_ts) == (measurement, tags, ts[i])
        want = {k: col[i].item() for k, col in fields.items() if np.isfinite(col[i])}
        assert got_fields == want  # floats exactly: shortest repr round-trips


@settings(max_examples=60, deadline=None)
@given(
    tags=st.dictionaries(_text, _text, max_size=3),
    fields=st.dictionaries(
        _text,
        st.one_of(_floats, st.integers(-(2**63), 2**63 - 1), st.booleans(), _text),
        min_size=1,
        max_size=5,
    ),
    ts=st.integers(0, 2**62),
)
def test_encode_point_equals_point_output(tags: dict[str, str], fields: dict[str, object], ts: int) -> None:
    p = Point("event")
    for k, v in tags.items():
        p = p.tag(k, v)
    for k, value in fields.items():
        p = p.field(k, value)
    expected = p.time(ts).to_line_protocol()
    ours = encode_point("event", tags, fields, ts)  # type: ignore[arg-type]
    assert ours == (expected + "\n").encode() if expected else ours == b""


def test_schema_doc_examples_are_what_the_encoder_writes() -> None:
    """docs/influx-schema.md shows real output: each example line re-encodes to itself."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "influx-schema.md").read_text()
    block = doc.split("## Line protocol produced", 1)[1].split("```", 2)[1]
    examples = [line for line in block.splitlines() if line.strip()]
    assert len(examples) >= 4
    for line in examples:
        meas, tags, fields, ts = parse_line(line)
        assert encode_point(meas, tags, fields, ts).decode() == line + "\n"  # type: ignore[arg-type]
