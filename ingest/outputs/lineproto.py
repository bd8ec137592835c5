"""InfluxDB line protocol, encoded in bulk from numpy arrays.

Why not influxdb-client's ``Point``: building one Python object per sample costs about 9 µs per
4-field line, which at 50 Hz x channels x homes is the gateway's whole CPU budget. Here a block of
samples becomes one ``uint8`` matrix, one row per line: constant parts (measurement, tags, field keys)
are broadcast, numbers are turned into ASCII digits with whole-array arithmetic, every unused cell
is a 0 byte, and a single boolean mask squeezes the 0 bytes out. No Python code runs per sample on
the fixed-point path (``decimals=``); the exact path (shortest round-trip ``repr``) uses numpy's C
float formatter. Numbers: ``bench/bench_lineproto.py`` and ``docs/influx-schema.md``.

Line protocol (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/)::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] timestamp_ns

Escaping, as in the reference: measurement: ``,`` and space; tag keys, tag values and field keys:
``,``, ``=`` and space; string field values: ``"`` and ``\\``. Tags and fields are written sorted by
key (what InfluxDB prefers and what ``Point`` does), so output compares equal to ``Point``'s.
NaN and infinities cannot be written in line protocol: such a field is left out of its line, and a
line left without any field is dropped (the caller sees it in the line count). Names that line
protocol cannot carry (newlines, tabs, NUL, a trailing backslash, a leading ``#``) raise ValueError naming
the key, instead of producing a batch that InfluxDB rejects with a 400.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

__all__ = [
    "FieldValue",
    "LineProtocolError",
    "encode_columns",
    "encode_point",
    "escape_key",
    "escape_measurement",
    "parse_line",
    "parse_lines",
]

FieldValue = float | int | str | bool | np.floating | np.integer | np.bool_

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})
#: cannot appear in names at all (a tab would not be escaped, and parsers differ on it)
_FORBIDDEN_IN_NAMES = ("\n", "\r", "\t", "\x00")
#: cannot appear in string field values, even quoted
_FORBIDDEN_IN_STRINGS = ("\n", "\r", "\x00")
#: fixed-point values must stay below this after scaling, with margin for rounding in int64
_FIXED_LIMIT = 2.0**62
_REPR_WIDTH = 25  # longest float64 repr: "-1.7976931348623157e+308" is 24 characters
_INT_WIDTH = 20  # "-9223372036854775808"


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{what} {name!r} must be a str, not {type(name).__name__}")
    if name == "":
        raise ValueError(f"{what} must not be empty")
    for ch in _FORBIDDEN_IN_NAMES:
        if ch in name:
            raise ValueError(f"{what} {name!r} contains {ch!r}, which line protocol cannot carry")
    if name.endswith("\\"):
        raise ValueError(f"{what} {name!r} ends with a backslash, which would escape the delimiter after it")


def escape_measurement(name: str) -> str:
    """Validate and escape a measurement name."""
    _check_name("measurement", name)
    if name.startswith("#"):
        raise ValueError(f"measurement {name!r} starts with '#': InfluxDB would read the line as a comment")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(what: str, name: str) -> str:
    """Validate and escape a tag key, tag value or field key (``what`` names it in errors)."""
    _check_name(what, name)
    return name.translate(_KEY_ESCAPES)


def _series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    parts = [escape_measurement(measurement)]
    for key, value in sorted(tags.items()):
        parts.append(f"{escape_key('tag key', key)}={escape_key(f'value of tag {key!r}', value)}")
    return ",".join(parts)


def _escape_string_value(key: str, value: str) -> str:
    for ch in _FORBIDDEN_IN_STRINGS:
        if ch in value:
            raise ValueError(
                f"string value of field {key!r} contains {ch!r}, which line protocol cannot carry"
            )
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def _format_float(value: float) -> str:
    s = repr(float(value))
    return s[:-2] if s.endswith(".0") else s  # as Point: "3" rather than "3.0"; still a float field


def encode_point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int
) -> bytes:
    """One line (with its trailing newline) for a single record such as a spasm event.

    Floats are written exactly (shortest round-trip repr), ints with the ``i`` suffix, bools as
    ``true``/``false``, strings quoted and escaped. Non-finite floats are left out; if no field is
    left the result is ``b""`` (nothing to write), as with ``Point``.
    """
    prefix = _series_prefix(measurement, tags)
    out = []
    for key, value in sorted(fields.items()):
        ekey = escape_key("field key", key)
        if isinstance(value, bool | np.bool_):
            text = "true" if value else "false"
        elif isinstance(value, int | np.integer):
            if not -(2**63) <= int(value) < 2**63:
                raise ValueError(f"integer field {key!r} = {value} does not fit a signed 64-bit integer")
            text = f"{int(value)}i"
        elif isinstance(value, float | np.floating):
            if not math.isfinite(value):
                continue
            text = _format_float(float(value))
        elif isinstance(value, str):
            text = _escape_string_value(key, value)
        else:
            raise TypeError(f"field {key!r} has unsupported type {type(value).__name__}")
        out.append(f"{ekey}={text}")
    if not out:
        return b""
    return f"{prefix} {','.join(out)} {int(ts_ns)}\n".encode()


# ---------------------------------------------------------------------------------------------- columns


def _const(text: bytes, n: int) -> npt.NDArray[np.uint8]:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def _digits(a: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """ASCII digits of non-negative ints in ``width`` columns; leading zeros (but the units) are 0 bytes."""
    n = a.shape[0]
    out = np.empty((n, width), dtype=np.uint8)
    rest = a.copy()
    for j in range(width - 1, -1, -1):
        out[:, j] = rest % 10 + 48
        rest //= 10
    for j in range(width - 1):
        out[a < 10 ** (width - 1 - j), j] = 0
    return out


def _int_text(v: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """Decimal text of int64 values: a sign column (0 byte when positive) and the digits."""
    n = v.shape[0]
    if n and int(v.min()) == np.iinfo(np.int64).min:  # abs() would overflow: let numpy format it
        return v.astype(f"S{_INT_WIDTH}").view(np.uint8).reshape(n, _INT_WIDTH)
    a = np.abs(v)
    width = len(str(int(a.max()))) if n else 1
    sign = np.where(v < 0, np.uint8(ord("-")), np.uint8(0))[:, None]
    return np.hstack([sign, _digits(a, width)])


def _fixed_digits(x: npt.NDArray[np.float64], decimals: int) -> npt.NDArray[np.uint8]:
    """ASCII fixed-point text of finite values, padded with 0 bytes; trailing zeros trimmed."""
    n = x.shape[0]
    scale = 10**decimals
    q = np.rint(x * scale).astype(np.int64)
    a = np.abs(q)
    ip = a // scale
    fp = a % scale
    width = len(str(int(ip.max()))) if n else 1
    cols = [np.where(q < 0, np.uint8(ord("-")), np.uint8(0))[:, None], _digits(ip, width)]
    if decimals > 0:
        fdig = np.empty((n, decimals), dtype=np.uint8)
        rest = fp.copy()
        keep = np.zeros(n, dtype=bool)  # becomes True from the last non-zero digit leftwards
        for j in range(decimals - 1, -1, -1):
            d = rest % 10
            rest //= 10
            keep |= d != 0
            fdig[:, j] = np.where(keep, d + 48, 0)
        cols.append(np.where(fp != 0, np.uint8(ord(".")), np.uint8(0))[:, None])
        cols.append(fdig)
    return np.hstack(cols)


def _repr_digits(x: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Shortest round-trip text (numpy's float->bytes cast equals Python's repr), ".0" trimmed."""
    n = x.shape[0]
    m = np.ascontiguousarray(x.astype(f"S{_REPR_WIDTH}")).view(np.uint8).reshape(n, _REPR_WIDTH).copy()
    length = np.count_nonzero(m, axis=1)
    rows = np.arange(n)
    last = np.maximum(length - 1, 0)
    before = np.maximum(length - 2, 0)
    trim = (length >= 2) & (m[rows, before] == ord(".")) & (m[rows, last] == ord("0"))
    m[rows[trim], before[trim]] = 0
    m[rows[trim], last[trim]] = 0
    return m


def _field_matrix(
    key: str, col: npt.NDArray[np.generic], decimals: int | None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """(text matrix, present mask) of one field column."""
    n = col.shape[0]
    kind = col.dtype.kind
    if kind == "b":
        text = np.where(col, b"true", b"false").astype("S5")
        return np.ascontiguousarray(text).view(np.uint8).reshape(n, 5), np.ones(n, dtype=bool)
    if kind in "iu":
        if kind == "u" and n and int(col.max()) >= 2**63:
            raise ValueError(f"integer field {key!r} has values beyond the signed 64-bit range")
        return np.hstack([_int_text(col.astype(np.int64)), _const(b"i", n)]), np.ones(n, dtype=bool)
    if kind == "f":
        x = col.astype(np.float64, copy=False)
        present = np.isfinite(x)
        x = np.where(present, x, 0.0)
        if decimals is not None and (not n or float(np.abs(x).max()) * 10**decimals < _FIXED_LIMIT):
            return _fixed_digits(x, decimals), present
        return _repr_digits(x), present
    if kind in "UO":
        present = np.array([v is not None for v in col.tolist()], dtype=bool)
        texts = []
        for v in col.tolist():
            if v is None:
                texts.append(b"")
            elif isinstance(v, str):
                texts.append(_escape_string_value(key, v).encode())
            else:
                raise TypeError(f"string field {key!r} holds a {type(v).__name__}")
        arr = np.array(texts, dtype=f"S{max((len(t) for t in texts), default=1) or 1}")
        return arr.view(np.uint8).reshape(n, arr.dtype.itemsize), present
    raise TypeError(f"field {key!r} has unsupported dtype {col.dtype}")


def encode_columns(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, npt.ArrayLike],
    timestamps_ns: npt.ArrayLike,
    *,
    decimals: int | Mapping[str, int] | None = None,
) -> bytes:
    """Line protocol for a block of samples: one line per timestamp with all its (finite) fields.

    Parameters:
        measurement, tags: the series; tags are the same on every line.
        fields: field key -> 1-D array, all as long as ``timestamps_ns``. dtype decides the type:
            float (NaN/inf left out), signed/unsigned int (``i`` suffix; must fit int64), bool,
            str/object (string field; ``None`` leaves it out).
        timestamps_ns: int64 nanoseconds since the epoch (or datetime64, converted to ns).
        decimals: float formatting. None (default): exact shortest round-trip text, identical to
            ``Point``. An int, or a per-field mapping: fixed point with that many decimals (trailing
            zeros trimmed), several times faster; pick it from the sensor's resolution (for example
            3 for µV, 5 for g). A column too large for fixed point falls back to exact text.

    Returns the lines joined, each ending in a newline; rows whose fields are all non-finite are
    dropped (``result.count(b"\\n")`` is the number of lines written).
    """
    ts = np.asarray(timestamps_ns)
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[ns]").view(np.int64)
    if ts.ndim != 1 or ts.dtype.kind not in "iu":
        raise ValueError(f"timestamps_ns must be a 1-D integer array, got shape {ts.shape} dtype {ts.dtype}")
    n = ts.shape[0]
    if not fields:
        raise ValueError(f"measurement {measurement!r}: at least one field is needed")
    prefix = _series_prefix(measurement, tags).encode()
    cols: dict[str, np.ndarray] = {}
    for key in sorted(fields):
        col = np.asarray(fields[key])
        if col.ndim != 1 or col.shape[0] != n:
            raise ValueError(f"field {key!r} has shape {col.shape}; expected ({n},) like timestamps_ns")
        cols[key] = col
    if n == 0:
        return b""

    parts: list[npt.NDArray[np.uint8]] = [_const(prefix + b" ", n)]
    spans: list[tuple[int, int]] = []  # column range of each field, starting at its comma
    presents: list[npt.NDArray[np.bool_]] = []
    width = len(prefix) + 1
    for key, col in cols.items():
        dec = decimals.get(key) if isinstance(decimals, Mapping) else decimals
        text, present = _field_matrix(key, col, dec)
        head = b"," + escape_key("field key", key).encode() + b"="
        start = width
        parts += [_const(head, n), text]
        width += len(head) + text.shape[1]
        spans.append((start, width))
        presents.append(present)
    ts_text = _int_text(ts.astype(np.int64))
    parts += [_const(b" ", n), ts_text, _const(b"\n", n)]
    mat = np.hstack(parts)

    present_all = np.stack(presents, axis=1)
    for (start, end), present in zip(spans, presents, strict=True):
        if not present.all():
            mat[~present, start:end] = 0
    any_field = present_all.any(axis=1)
    first = np.argmax(present_all, axis=1)  # the first present field loses its leading comma
    comma_col = np.array([s for s, _ in spans])[first]
    rows = np.flatnonzero(any_field)
    mat[rows, comma_col[rows]] = 0
    if not any_field.all():
        mat[~any_field] = 0
    return mat[mat != 0].tobytes()


# ---------------------------------------------------------------------------------------------- parsing

_BOOL_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_BOOL_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_FLOAT_CHARS = frozenset("0123456789+-.eE")


class LineProtocolError(ValueError):
    """A line that is not valid line protocol; ``offset`` is the byte offset of the line."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"byte {offset}: {message}")
        self.offset = offset


def _read_name(s: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    """Read up to an unescaped character of ``stops``; ``\\x`` for x in ``escapable`` is x."""
    out: list[str] = []
    n = len(s)
    start = i
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in escapable:
            out.append(s[i + 1])
            i += 2
            continue
        if c in stops:
            break
        i += 1
        out.append(c)
    if i == start:
        raise ValueError(f"empty name at column {start}")
    return "".join(out), i


def _field_value(text: str, key: str) -> FieldValue:
    if not text:
        raise ValueError(f"field {key!r} has no value")
    last = text[-1]
    if last in "iu" and len(text) > 1 and (text[:-1].lstrip("-").isdigit()):
        v = int(text[:-1])
        if last == "u" and v < 0:
            raise ValueError(f"field {key!r}: unsigned value {text!r} is negative")
        return v
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    if not set(text) <= _FLOAT_CHARS:
        raise ValueError(f"field {key!r}: {text!r} is not a number, boolean or quoted string")
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"field {key!r}: {text!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"field {key!r}: {text!r} is not finite")
    return x


def _parse_plain(line: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int] | None:
    """The common case (no escapes, no strings: every series line) with str.split; None when the
    line needs the full parser (which then also produces the error message)."""
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    series, field_text, ts_text = parts
    names = series.split(",")
    measurement = names[0]
    if not measurement or measurement.startswith("#") or not ts_text.lstrip("-").isdigit():
        return None
    tags: dict[str, str] = {}
    for item in names[1:]:
        key, eq, value = item.partition("=")
        if not key or not eq or not value or "=" in value:
            return None
        tags[key] = value
    fields: dict[str, FieldValue] = {}
    for item in field_text.split(","):
        key, eq, value = item.partition("=")
        if not key or not eq or not value or "=" in value:
            return None
        try:
            fields[key] = _field_value(value, key)
        except ValueError:
            return None
    return measurement, tags, fields, int(ts_text)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
    """Parse one line (without its newline) into (measurement, tags, fields, timestamp_ns).

    Strict: the timestamp is required (the gateway always writes one; a stored point without its
    time would be meaningless), NaN / infinities are refused, as are empty names and trailing
    garbage. The inverse of ``encode_point`` / ``encode_columns``: for anything they write,
    ``parse_line`` gives back the same values (floats exactly). Raises ValueError.
    """
    if "\\" not in line and '"' not in line:
        fast = _parse_plain(line)
        if fast is not None:
            return fast
    n = len(line)
    measurement, i = _read_name(line, 0, ", ", ", ")
    if measurement.startswith("#"):
        raise ValueError("a comment line, not a point")
    tags: dict[str, str] = {}
    while i < n and line[i] == ",":
        key, i = _read_name(line, i + 1, "=, ", ",= ")
        if i >= n or line[i] != "=":
            raise ValueError(f"tag {key!r} has no '='")
        value, i = _read_name(line, i + 1, ", ", ",= ")
        tags[key] = value
    if i >= n or line[i] != " ":
        raise ValueError("no fields (expected a space after the series)")
    i += 1
    fields: dict[str, FieldValue] = {}
    while True:
        key, i = _read_name(line, i, "=, ", ",= ")
        if i >= n or line[i] != "=":
            raise ValueError(f"field {key!r} has no '='")
        i += 1
        if i < n and line[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise ValueError(f"field {key!r}: unterminated string")
                c = line[i]
                if c == "\\" and i + 1 < n and line[i + 1] in '"\\':
                    buf.append(line[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            fields[key] = "".join(buf)
        else:
            j = i
            while j < n and line[j] not in ", ":
                j += 1
            fields[key] = _field_value(line[i:j], key)
            i = j
        if i < n and line[i] == ",":
            i += 1
            continue
        break
    if i >= n or line[i] != " ":
        raise ValueError("no timestamp (the gateway always writes one)")
    ts_text = line[i + 1 :]
    if not ts_text or not ts_text.lstrip("-").isdigit():
        raise ValueError(f"timestamp {ts_text!r} is not an integer of nanoseconds")
    return measurement, tags, fields, int(ts_text)


def parse_lines(data: bytes) -> list[tuple[str, dict[str, str], dict[str, FieldValue], int]]:
    """Parse newline-terminated line protocol; blank lines and ``#`` comments are skipped.

    Raises ``LineProtocolError`` naming the byte offset of the first bad line.
    """
    out = []
    offset = 0
    for raw in data.split(b"\n"):
        start = offset
        offset += len(raw) + 1
        if not raw.strip() or raw.startswith(b"#"):
            continue
        try:
            line = raw.decode("utf-8")
            if line.endswith("\r"):
                raise ValueError("carriage return at the end of the line")
            out.append(parse_line(line))
        except (ValueError, UnicodeDecodeError) as exc:
            raise LineProtocolError(f"{exc}: {raw[:80]!r}", start) from None
    return out
