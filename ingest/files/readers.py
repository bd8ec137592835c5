"""Read recorded sEMG/accelerometer files into physical units: EDF+/BDF+, BioSPPy text, CSV.

Every reader returns a ``SignalFile``: EMG in microvolts (n, channels), accelerometer in g (m, 3)
or None, their rates, channel labels and the recording's start as UTC. Units are honoured as the
file declares them; where a file format has no units (raw ADC counts) the conversion used is
stated in ``notes`` so a person reading the output knows what was assumed. Errors name the file
and the signal or line at fault.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from detectors.limits import stream_problem
from ingest.files import MAGIC

__all__ = ["RecordingError", "SignalFile", "read_recording"]

_EMG_UNITS = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}
_ACC_UNITS = {"g": 1.0, "mg": 1e-3, "m/s^2": 1 / 9.80665, "m/s2": 1 / 9.80665, "m/s²": 1 / 9.80665}
_ACC_LABEL = re.compile(r"^(acc|accel|accelerometer|acceleration)[\s_.:-]*([xyz])\b", re.I)


#: The EDF+ annotation our exporter puts over the fraction of a second before the first sample.
NO_DATA_BEFORE_FIRST = "no data (before the first sample)"
#: ... and the end of its last one-second data record after a domain's last sample, per domain
#: (``"no data (after the last sample) emg"``): EDF holds whole records only, so it is zeros.
NO_DATA_AFTER_LAST = "no data (after the last sample)"


class RecordingError(ValueError):
    """A recording cannot be read as sEMG (+ accelerometer). The message names file and place."""


@dataclass
class SignalFile:
    path: Path
    emg_uv: np.ndarray
    emg_rate_hz: float
    channel_labels: list[str]
    acc_g: np.ndarray | None
    acc_rate_hz: float | None
    start: datetime
    notes: list[str] = field(default_factory=list)
    annotations: list[tuple[float, float, str]] = field(default_factory=list)  # onset s, duration s, text
    #: False when the file carries no start time and ``start`` is a placeholder (the epoch).
    start_known: bool = True

    @property
    def duration_s(self) -> float:
        return len(self.emg_uv) / self.emg_rate_hz


def read_recording(path: str | Path) -> SignalFile:
    """Pick the reader by extension (.edf, .bdf, .csv) or by content (BioSPPy "Simple Text Format").

    Whatever the format, the result is checked before anything runs on it (``check_signals``):
    a rate the detector cannot handle, no finite samples, or non-finite values are one
    ``RecordingError`` line naming the file, never a traceback or a silent "0 events".
    """
    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file")
    if p.is_dir():
        raise RecordingError(f"{p}: is a directory, not a recording")
    if not p.is_file():  # a FIFO or a device: reading it could block for ever or never end
        raise RecordingError(f"{p}: not a regular file (a pipe or a device?), not a recording")
    try:
        return check_signals(_read(p))
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{p}: not UTF-8 text at byte offset {exc.start}") from None
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read: {exc.strerror or exc}") from None


def _read(p: Path) -> SignalFile:
    ext = p.suffix.lower()
    if ext in (".edf", ".bdf", ".rec"):
        return read_edf(p)
    if ext == ".csv":
        return read_csv(p)
    with p.open("rb") as fh:
        head = fh.read(64)
    if head.startswith(b"# Simple Text Format"):
        return read_biosppy_txt(p)
    if ext == ".nsc":  # named as a capture, but is_capture found no capture magic at its start
        what = "the file is empty" if not head else f"its first bytes are {head[:8].hex(' ')}"
        raise RecordingError(
            f"{p}: not a neurospasm capture: byte offset 0 should hold the capture magic "
            f"{MAGIC.hex(' ')}, but {what}"
        )
    raise RecordingError(
        f"{p}: unknown format (expected .edf, .bdf, .csv, a capture (.nsc) or a BioSPPy "
        "'Simple Text Format' file)"
    )


def check_signals(sf: SignalFile) -> SignalFile:
    """What the detector needs: a supported rate, labels, finite samples (one line otherwise)."""
    p = sf.path
    if len(sf.emg_uv) == 0:
        raise RecordingError(f"{p}: no EMG samples")
    problem = stream_problem(sf.emg_rate_hz, sf.channel_labels, sf.acc_rate_hz)
    if problem is not None:
        raise RecordingError(f"{p}: {problem}")
    for name, arr, labels in (
        ("EMG", sf.emg_uv, sf.channel_labels),
        ("accelerometer", sf.acc_g, ["x", "y", "z"]),
    ):
        if arr is None:
            continue
        # The usual case in one pass without a mask as large as the recording: a sum of finite
        # values is finite (unless it overflows, then the exact check below decides).
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.add.reduce(arr, axis=None))
        if math.isfinite(total):
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            share = 100.0 * bad.sum() / bad.size
            raise RecordingError(
                f"{p}: {name} {labels[col]!r} has non-finite values (NaN/inf; {share:.3g} % of "
                f"samples, first at sample {row}): fix or cut them, nothing would be detected there"
            )
    return sf


def _emg_scale(unit: str, where: str) -> float:
    u = unit.strip().lower().replace(" ", "")
    if u not in _EMG_UNITS:
        raise RecordingError(f"{where}: EMG unit {unit!r} is not one of uV, mV, V")
    return _EMG_UNITS[u]


def _acc_scale(unit: str, where: str) -> float:
    u = unit.strip().lower().replace(" ", "")
    if u not in _ACC_UNITS:
        raise RecordingError(f"{where}: accelerometer unit {unit!r} is not one of g, mg, m/s^2")
    return _ACC_UNITS[u]


@contextlib.contextmanager
def _c_stdout_captured() -> Iterator[list[str]]:
    """File descriptor 1 goes to a temporary file while pyedflib opens a file; the list yielded
    holds what was written there once the block ends.

    Its C library prints some checks to stdout ("filesize 20000 != 2114*12+768" for a truncated
    file, without a newline) before it raises; stdout is ``neurospasm detect``'s event stream, one
    JSON object per line, which such a line would corrupt, and on stderr it ran into the error
    line. The caller folds it into its error instead. C's stdio buffer is flushed before fd 1 is
    restored (a pipe's stdout is block-buffered: it would otherwise leak out at exit)."""
    got: list[str] = []
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to protect
        yield got
        return
    import ctypes
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        try:
            sys.stdout.flush()
            os.dup2(tmp.fileno(), 1)
            yield got
        finally:
            with contextlib.suppress(Exception):
                ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            got.append(tmp.read().decode("utf-8", "replace").strip())


def _edf_date_or_time(text: str) -> bool:
    return len(text) == 8 and text[2] == "." and text[5] == "." and text.replace(".", "").isdigit()


def _edf_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _edf_seconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


#: The fixed part of an EDF/BDF header (Kemp et al. 1992; BDF as BioSemi's 24-bit variant):
#: (byte offset, length, field, check of its stripped text); every field is ASCII, left-justified,
#: space-padded.
_EDF_FIELDS: tuple[tuple[int, int, str, Callable[[str], bool]], ...] = (
    (168, 8, "start date (dd.mm.yy)", _edf_date_or_time),
    (176, 8, "start time (hh.mm.ss)", _edf_date_or_time),
    (184, 8, "number of bytes in the header", _edf_int),
    (236, 8, "number of data records", _edf_int),
    (244, 8, "duration of a data record", _edf_seconds),
    (252, 4, "number of signals", _edf_int),
)


def edf_header_problem(path: Path) -> str | None:
    """What is wrong with a file's fixed 256-byte EDF/BDF header, naming the byte offset of the
    first bad field, or None when it looks right (the fault is further on: pyedflib's message
    says it). pyedflib's own errors for a bad header are generic ("a read error occurred")."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None  # the caller's error already says the file cannot be opened
    if len(head) < 256:
        return f"the file is {len(head)} bytes, shorter than the 256-byte EDF header"
    if head[:8] != b"0       " and head[:8] != b"\xffBIOSEMI":
        return f"bytes 0-7 (version) are {head[:8]!r}, not '0' (EDF) or 0xFF 'BIOSEMI' (BDF)"
    for off, n, what, ok in _EDF_FIELDS:
        raw = head[off : off + n]
        if not ok(raw.decode("ascii", "replace").strip()):
            return f"bytes {off}-{off + n - 1} ({what}) are {raw!r}"
    if head[192:197] in (b"EDF+D", b"BDF+D"):
        kind = head[192:197].decode("ascii")
        return (
            f"bytes 192-196 say {kind}: a discontinuous recording (its data records carry their own "
            f"start times, with gaps between them), which is not read here; convert it to "
            f"continuous {kind[:4]}C files first (EDFbrowser: Tools, Convert EDF+D to EDF+C)"
        )
    ns = int(head[252:256].decode("ascii").strip())
    header = int(head[184:192].decode("ascii").strip())
    if ns < 1 or header != 256 * (ns + 1):
        return (
            f"bytes 184-191 (number of bytes in the header) say {header}, but {ns} signals "
            f"(bytes 252-255) need 256 * ({ns} + 1) = {256 * (ns + 1)}"
        )
    return None


def read_edf(path: Path) -> SignalFile:
    """EDF+/BDF+: signals labelled "EMG..." are EMG; "ACC X/Y/Z" (or similar) the accelerometer."""
    import pyedflib

    printed: list[str] = []
    try:
        with _c_stdout_captured() as printed:
            f = pyedflib.EdfReader(str(path))
    except OSError as exc:
        # pyedflib's message starts with the path already: name the file once.
        why = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path}:").strip()
        said = " ".join("".join(printed).split())
        where = edf_header_problem(path)
        raise RecordingError(
            f"{path}: not a readable EDF/BDF file: {where or why}" + (f" ({said})" if said else "")
        ) from exc
    if printed and printed[0]:
        print(printed[0], file=sys.stderr)  # a check it printed without failing: a warning
    try:
        labels = [s.strip() for s in f.getSignalLabels()]
        emg_idx = [i for i, lab in enumerate(labels) if lab.upper().startswith("EMG")]
        acc_idx: dict[str, int] = {}
        for i, lab in enumerate(labels):
            m = _ACC_LABEL.match(lab)
            if m:
                acc_idx[m.group(2).lower()] = i
        if not emg_idx:
            raise RecordingError(f"{path}: no EMG signal (labels starting with 'EMG'); signals are {labels}")
        rates = {float(f.getSampleFrequency(i)) for i in emg_idx}
        if len(rates) != 1:
            raise RecordingError(f"{path}: EMG signals have different sample rates {sorted(rates)}")
        emg_rate = rates.pop()
        scales = [_emg_scale(f.getPhysicalDimension(i), f"{path}: signal {labels[i]!r}") for i in emg_idx]
        emg = _read_signals(f, path, emg_idx, scales)
        acc = None
        acc_rate = None
        if set(acc_idx) == {"x", "y", "z"}:
            acc_rates = {float(f.getSampleFrequency(acc_idx[a])) for a in "xyz"}
            if len(acc_rates) != 1:
                raise RecordingError(
                    f"{path}: accelerometer axes have different sample rates {sorted(acc_rates)}"
                )
            acc_rate = acc_rates.pop()
            axis_idx = [acc_idx[a] for a in "xyz"]
            acc_scales = [
                _acc_scale(f.getPhysicalDimension(i), f"{path}: signal {labels[i]!r}") for i in axis_idx
            ]
            acc = _read_signals(f, path, axis_idx, acc_scales)
        start = f.getStartdatetime().replace(tzinfo=UTC)
        onsets, durations, texts = f.readAnnotations()
        annotations = [(float(o), float(d), str(t)) for o, d, t in zip(onsets, durations, texts, strict=True)]
        notes = ["start time taken as UTC (EDF stores local time without a zone)"]
        if annotations and annotations[0][0] == 0.0 and annotations[0][2].startswith(NO_DATA_BEFORE_FIRST):
            # Our exporter starts the file on a whole second (EDF's header time has no fraction)
            # and marks the fraction before the first real sample as no data. Those zeros are
            # not signal: read as samples they look like a flat (lead-off) channel.
            skip_s = annotations[0][1]
            emg = emg[round(skip_s * emg_rate) :]
            if acc is not None and acc_rate:
                acc = acc[round(skip_s * acc_rate) :]
            start += timedelta(seconds=skip_s)
            annotations = [(o - skip_s, d, t) for o, d, t in annotations[1:]]
            notes.append(f"the first {skip_s:.3f} s, annotated as no data, skipped")
        # The zero padding after each domain's last sample, to the end of the last data record.
        tails = {t.rsplit(" ", 1)[-1]: o for o, _, t in annotations if t.startswith(NO_DATA_AFTER_LAST)}
        if "emg" in tails:
            emg = emg[: max(0, round(tails["emg"] * emg_rate))]
        if "acc" in tails and acc is not None and acc_rate:
            acc = acc[: max(0, round(tails["acc"] * acc_rate))]
        if tails:
            annotations = [a for a in annotations if not a[2].startswith(NO_DATA_AFTER_LAST)]
            notes.append("the padding after the last sample, annotated as no data, skipped")
        return SignalFile(
            path,
            emg,
            emg_rate,
            [labels[i] for i in emg_idx],
            acc,
            acc_rate,
            start,
            notes,
            annotations,
        )
    finally:
        f.close()


def _read_signals(f: Any, path: Path, idx: list[int], scales: list[float]) -> np.ndarray:
    """Signals ``idx`` of an open ``pyedflib.EdfReader`` in physical units times ``scales``, as
    columns (n, len(idx)), cut to the shortest: what ``np.stack([f.readSignal(i) * scale ...])``
    gives, bit for bit, in a fraction of its time.

    pyedflib converts sample by sample in C and reads each signal in a pass of its own (45 ns a
    sample, as long as all of the detector's work on a 1 kHz file); here the data records are read
    once and decoded with numpy, with edflib's own arithmetic (``bitvalue * (offset + digital)``
    from the header's parsed limits). The first and last data record of every signal are checked
    against pyedflib's own reading; a file laid out otherwise than this decoder expects (or any
    mismatch) is read by pyedflib as before.

    The result is channel-major in memory, (n, channels) to the caller (a transposed view): each
    signal is decoded straight into its own contiguous row (a strided column write costs several
    times a copy, and every fresh array of a new process costs its page faults), and the
    detector, which works channel-major, takes its blocks with a plain copy. Same values.
    """
    fast = _decode_records(f, path, idx, scales)
    if fast is not None:
        return fast.T
    cols = [f.readSignal(i) for i in idx]
    n = min(len(c) for c in cols)
    out = np.empty((len(idx), n))
    for j, (col, scale) in enumerate(zip(cols, scales, strict=True)):
        if scale == 1.0:  # x * 1.0 is x: skip a pass over the samples
            out[j] = col[:n]
        else:
            np.multiply(col[:n], scale, out=out[j])
    return out.T


#: bytes per sample of EDF (16-bit) and BDF (24-bit) files, by pyedflib's file type.
_SAMPLE_BYTES = {0: 2, 1: 2, 2: 3, 3: 3}  # FILETYPE_EDF, EDFPLUS, BDF, BDFPLUS


def _decode_records(
    f: Any, path: Path, idx: list[int], scales: list[float] | None = None
) -> np.ndarray | None:
    """Physical samples (times ``scales``, default 1) of signals ``idx`` decoded from the data
    records with numpy, channel-major (len(idx), n), or None when the layout is not the plain one
    (see ``_read_signals``), the signals differ in length or a checked record differs."""
    width = _SAMPLE_BYTES.get(int(f.filetype))
    if width is None:
        return None
    with open(path, "rb") as fh:
        head = fh.read(256)
        try:
            hdr_bytes, ns = int(head[184:192]), int(head[252:256])
        except ValueError:
            return None
        sig = fh.read(ns * 256)
    if len(sig) != ns * 256 or hdr_bytes != 256 * (ns + 1):
        return None

    def field(offset: int, size: int) -> list[str]:
        start = ns * offset
        return [sig[start + k * size : start + (k + 1) * size].decode("latin-1").strip() for k in range(ns)]

    try:
        spr = [int(v) for v in field(216, 8)]  # after label, transducer, unit, 4 limits, prefilter
    except ValueError:
        return None
    labels = field(0, 16)
    data_sigs = [k for k in range(ns) if labels[k] not in ("EDF Annotations", "BDF Annotations")]
    n_rec = int(f.datarecords_in_file)
    rec_bytes = sum(spr) * width
    if len(data_sigs) != f.signals_in_file or n_rec <= 0 or rec_bytes <= 0:
        return None
    if [labels[k] for k in data_sigs] != [s.strip() for s in f.getSignalLabels()]:
        return None
    if path.stat().st_size < hdr_bytes + n_rec * rec_bytes:
        return None
    per_rec = {spr[data_sigs[i]] for i in idx}
    if len(per_rec) != 1:
        return None
    n_per = per_rec.pop()
    raw = np.fromfile(path, dtype=np.uint8, count=n_rec * rec_bytes, offset=hdr_bytes)
    raw = raw.reshape(n_rec, rec_bytes)
    starts = np.concatenate([[0], np.cumsum(spr)]) * width
    out = np.empty((len(idx), n_rec * n_per))
    for j, i in enumerate(idx):
        k = data_sigs[i]
        if spr[k] != int(f.getNSamples()[i]) // n_rec:
            return None
        block = raw[:, starts[k] : starts[k + 1]]
        if width == 2:
            digital = block.view("<i2")
        else:  # 24-bit little-endian, sign-extended
            b = block.reshape(n_rec, spr[k], 3).astype(np.int32)
            digital = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
            digital = digital - ((digital & 0x800000) << 1)
        # edflib: bitvalue = (pmax - pmin) / (dmax - dmin); offset = pmax / bitvalue - dmax;
        # physical = bitvalue * (offset + digital), all in double
        pmax, pmin = float(f.getPhysicalMaximum(i)), float(f.getPhysicalMinimum(i))
        dmax, dmin = int(f.getDigitalMaximum(i)), int(f.getDigitalMinimum(i))
        bitvalue = (pmax - pmin) / float(dmax - dmin)
        offset = pmax / bitvalue - float(dmax)
        x = out[j]
        # the digital values as doubles (exact), plus offset, times bitvalue: in the row itself
        np.add(digital, offset, out=x.reshape(n_rec, n_per), dtype=np.float64)
        x *= bitvalue
        for rec in (0, n_rec - 1):  # cross-check against pyedflib where it is cheap
            a = rec * spr[k]
            if not np.array_equal(f.readSignal(i, a, spr[k]), x[a : a + spr[k]]):
                return None
        scale = 1.0 if scales is None else scales[j]
        if scale != 1.0:  # x * 1.0 is x: skip a pass over the samples
            x *= scale
    return out


def _header(lines: list[str], key: str) -> str | None:
    for line in lines:
        if line.startswith("#") and ":=" in line:
            k, v = line[1:].split(":=", 1)
            if k.strip().lower() == key.lower():
                return v.strip()
    return None


def _header_number(path: Path, key: str, text: str, low: float | None = None) -> float:
    """A header value that must be a finite number (> 0, or >= ``low``), else a one-line error."""
    try:
        v = float(text)
    except ValueError:
        raise RecordingError(f"{path}: header {key!r}: not a number: {text!r}") from None
    if not math.isfinite(v) or (v <= 0 if low is None else v < low):
        need = "a positive number" if low is None else f"a number >= {low:g}"
        raise RecordingError(f"{path}: header {key!r}: need {need}, got {text!r}")
    return v


def _not_utf8(path: Path) -> str:
    """Where a text file stops being UTF-8, as a byte offset in the file (numpy's own message
    counts from the start of the block it was reading)."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return f"line {line}: not UTF-8 text at byte offset {exc.start} (0x{raw[exc.start]:02x})"
    return "not UTF-8 text"


def _numpy_message(exc: ValueError) -> str:
    """numpy's loadtxt message without its closing advice (``; use `usecols` ...``)."""
    return re.sub(r";\s*use\s+`?usecols.*$", "", str(exc), flags=re.S).strip()


def read_biosppy_txt(path: Path) -> SignalFile:
    """BioSPPy/OpenSignals "Simple Text Format": ``#`` header lines, then samples.

    EMG in 12-bit (or ``Resolution``-bit) ADC counts is converted with BITalino's published EMG
    transfer function, EMG(V) = (ADC / 2^n - 1/2) * 3.3 V / 1009 — an assumption stated in
    ``notes``, since the file itself does not say which sensor made it.
    """
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = [line for line in text if line.startswith("#")]
    rate_s = _header(header, "Sampling Rate (Hz)")
    if rate_s is None:
        raise RecordingError(f"{path}: header has no 'Sampling Rate (Hz):=' line")
    rate = _header_number(path, "Sampling Rate (Hz)", rate_s)
    labels = (_header(header, "Labels") or "").split()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": said below, in one line
            data = np.loadtxt(path, comments="#", ndmin=2)
    except UnicodeDecodeError:
        raise RecordingError(f"{path}: {_not_utf8(path)}") from None
    except ValueError as exc:
        raise RecordingError(f"{path}: {_numpy_message(exc)}") from None
    if data.size == 0:
        raise RecordingError(f"{path}: no data rows after the header")
    if labels and len(labels) != data.shape[1]:
        raise RecordingError(f"{path}: {len(labels)} labels but {data.shape[1]} data columns")
    labels = labels or [f"col{i}" for i in range(data.shape[1])]
    start = datetime.fromtimestamp(0, UTC)
    if not any(lab.upper().startswith("EMG") for lab in labels) and all(
        _ACC_LABEL.match(lab) for lab in labels
    ):
        raise RecordingError(f"{path}: accelerometer-only file (labels {labels}); detection needs EMG")
    bits_s = _header(header, "Resolution")
    bits_f = 12.0 if bits_s is None else _header_number(path, "Resolution", bits_s, low=0.0)
    if bits_f != int(bits_f) or bits_f > 32:
        raise RecordingError(f"{path}: header 'Resolution': need whole bits from 0 to 32, got {bits_s!r}")
    bits = int(bits_f)
    emg_cols = [i for i, lab in enumerate(labels) if lab.upper().startswith("EMG")] or list(
        range(data.shape[1])
    )
    if bits > 0:
        uv = (data[:, emg_cols] / 2**bits - 0.5) * 3.3 / 1009 * 1e6
        notes = [
            f"raw {bits}-bit ADC counts converted with BITalino's EMG transfer function (assumed sensor)"
        ]
    else:
        uv = data[:, emg_cols]
        notes = ["values taken as microvolts (resolution 0)"]
    notes.append("no start time in the file: 1970-01-01T00:00:00Z used")
    return SignalFile(
        path,
        uv,
        rate,
        [f"EMG {labels[i]}".replace("EMG EMG", "EMG") for i in emg_cols],
        None,
        None,
        start,
        notes,
        start_known=False,
    )


def read_csv(path: Path) -> SignalFile:
    """CSV layout (docs/recordings.md): optional ``# start: ISO-8601`` line, then a header row.

    Columns: ``time_s`` (seconds from start; the rate is taken from it), EMG columns named
    ``EMG <label> [unit]`` (unit uV, mV or V), optional ``ACC X [g]``, ``ACC Y [g]``, ``ACC Z [g]``
    at the same rate.
    """
    try:
        return _read_csv(path)
    except UnicodeDecodeError:  # anywhere in the file, its header lines included
        raise RecordingError(f"{path}: {_not_utf8(path)}") from None


def _read_csv(path: Path) -> SignalFile:
    start = datetime.fromtimestamp(0, UTC)
    notes: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:  # (-sig: a spreadsheet's BOM is no header)
        first = fh.readline()
        if first.startswith("#"):
            m = re.match(r"#\s*start\s*:\s*(\S+)", first)
            if m:
                try:
                    start = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).astimezone(UTC)
                    start.timestamp()  # representable as a host time (years 1-9999 in UTC)
                except (ValueError, OverflowError, OSError) as exc:
                    raise RecordingError(f"{path}: line 1: bad start time {m.group(1)!r}") from exc
            header_line = fh.readline()
        else:
            header_line = first
            notes.append("no '# start:' line: 1970-01-01T00:00:00Z used")
        header = next(csv.reader([header_line]), [])
        first_data_line = 3 if first.startswith("#") else 2
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data": said below, in one line
                rows = np.loadtxt(fh, delimiter=",", ndmin=2)
        except UnicodeDecodeError:
            raise  # (a ValueError too) named by ``read_csv`` with its offset in the file
        except ValueError as exc:
            # numpy counts data rows from 0: name the file's own line number
            msg = _numpy_message(exc)
            m = re.search(r"at row (\d+)", msg)
            where = f"line {int(m.group(1)) + first_data_line}: " if m else ""
            raise RecordingError(f"{path}: {where}{msg}") from None
    cols = [h.strip() for h in header]
    if rows.size == 0:
        raise RecordingError(f"{path}: no data rows after the header")
    if rows.shape[1] != len(cols):
        raise RecordingError(f"{path}: the header has {len(cols)} columns but the data rows {rows.shape[1]}")
    if not cols or cols[0].lower() != "time_s":
        first = cols[0] if cols else "nothing"
        raise RecordingError(f"{path}: line 1: the first column must be time_s (seconds), got {first!r}")
    unit_re = re.compile(r"^(.*?)\s*\[(.+)\]$")
    emg, labels, acc = [], [], {}
    for i, name in enumerate(cols[1:], start=1):
        m = unit_re.match(name)
        label, unit = (m.group(1), m.group(2)) if m else (name, "")
        if label.upper().startswith("EMG"):
            emg.append(rows[:, i] * _emg_scale(unit or "uV", f"{path}: column {name!r}"))
            labels.append(label)
        elif a := _ACC_LABEL.match(label):
            acc[a.group(2).lower()] = rows[:, i] * _acc_scale(unit or "g", f"{path}: column {name!r}")
    if not emg:
        raise RecordingError(f"{path}: no EMG column (names starting with 'EMG')")
    t = rows[:, 0]
    if len(t) < 2:
        raise RecordingError(f"{path}: one data row: the sample rate needs at least two (time_s apart)")
    bad = np.flatnonzero(~(np.diff(t) > 0))  # (a NaN time is no increase either)
    if bad.size:
        k = int(bad[0]) + 1
        raise RecordingError(
            f"{path}: line {k + first_data_line}: time_s {float(t[k])!r} does not increase "
            f"(the row before has {float(t[k - 1])!r})"
        )
    rate = float(round(1.0 / float(np.median(np.diff(t))), 6))
    acc_arr = np.stack([acc[a] for a in "xyz"], axis=1) if set(acc) == {"x", "y", "z"} else None
    return SignalFile(
        path,
        np.stack(emg, axis=1),
        rate,
        labels,
        acc_arr,
        rate if acc_arr is not None else None,
        start,
        notes,
        start_known=not notes,
    )
