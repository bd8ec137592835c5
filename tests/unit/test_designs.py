"""Filter designs without importing scipy.signal: scipy's own arrays, cached, checked, equal.

``detectors.designs`` hands out scipy.signal's designs (computed by scipy once per parameters,
then remembered, and kept on disk by ``ingest.files.design_cache``); ``detectors.sos`` runs them
through scipy's compiled kernel, loaded without ``scipy/signal/__init__``. Everything here is
compared with scipy.signal itself: the designs bit for bit, ``sosfiltfilt`` bit for bit,
``detrend`` to rounding. The cache is real files in a temporary directory: a miss computes and
stores, a hit computes nothing, and a corrupt, tampered, foreign or implausible entry is never
used. Last, a whole ``neurospasm detect`` process with a filled cache does not import
scipy.signal, and prints what a process without a cache prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from detectors import DetectorConfig, designs, sos
from detectors.emg_filters import design_emg_filter
from ingest.files import design_cache
from ingest.files.design_cache import DesignCache

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[DesignCache]:
    """A fresh on-disk cache as the designs' store, nothing remembered; restored afterwards."""
    store = DesignCache(tmp_path / "cache")
    previous = designs.use_store(store)
    designs.forget()
    try:
        yield store
    finally:
        designs.use_store(previous)
        designs.forget()


def _counts() -> dict[str, int]:
    return dict(designs.stats)


def _delta(before: dict[str, int]) -> dict[str, int]:
    return {k: designs.stats[k] - before[k] for k in before}


# -- the designs are scipy's ----------------------------------------------------------------

BUTTER_CASES = [
    (4, [20.0, 450.0], "bandpass", 2000.0),
    (4, [20.0, 450.0], "bandpass", 1000.0),
    (4, [20.0, 112.5], "bandpass", 250.0),
    (2, 5.0, "lowpass", 200.0),
    (2, 3.0, "lowpass", 20.0),
    (2, 20.0, "highpass", 1000.0),
    (2, [1.5, 15.0], "bandpass", 100.0),
    (3, 7.0, "lowpass", 100.0),  # odd order: a first-order section
]


@pytest.mark.parametrize(("order", "wn", "btype", "fs"), BUTTER_CASES)
def test_butter_is_scipys_bit_for_bit_computed_once(
    cache: DesignCache, order: int, wn: float | list[float], btype: str, fs: float
) -> None:
    want = signal.butter(order, wn, btype=btype, fs=fs, output="sos")
    before = _counts()
    got = designs.butter_sos(order, wn, btype, fs)
    assert got.tobytes() == want.tobytes() and got.shape == want.shape
    assert designs.butter_sos(order, wn, btype, fs).tobytes() == want.tobytes()
    assert _delta(before) == {"computed": 1, "stored": 0, "rejected": 0}
    zi = designs.sosfilt_zi(got)
    assert zi.tobytes() == signal.sosfilt_zi(want).tobytes()


def test_a_design_handed_out_is_a_copy(cache: DesignCache) -> None:
    """Callers scale sections in place (``emg_filters``): that may not change the next caller's."""
    a = designs.butter_sos(2, 5.0, "lowpass", 200.0)
    a[0, :3] /= 7.0
    assert (
        designs.butter_sos(2, 5.0, "lowpass", 200.0).tobytes()
        == signal.butter(2, 5.0, fs=200.0, output="sos").tobytes()
    )


@pytest.mark.parametrize(
    ("rate", "mains"), [(2000.0, 50), (1000.0, 60), (1024.0, 50), (500.0, None), (250.0, 60)]
)
def test_the_emg_cascade_is_scipys_composition(cache: DesignCache, rate: float, mains: int | None) -> None:
    """``design_emg_filter`` as it was written with scipy.signal directly: same bytes."""
    cfg = DetectorConfig()
    low, high = cfg.emg_band(rate)
    parts = [signal.butter(cfg.band_order, [low, high], btype="bandpass", fs=rate, output="sos")]
    if mains is not None:
        for h in range(1, cfg.mains_max_harmonic + 1, 2):
            f0 = h * mains
            if f0 >= high or f0 >= 0.48 * rate:
                break
            if f0 < low:
                continue
            b, a = signal.iirnotch(f0, cfg.notch_q, fs=rate)
            parts.append(np.concatenate([b, a])[None, :])
    want = np.ascontiguousarray(np.vstack(parts))
    got = design_emg_filter(cfg, rate, mains)
    assert got.tobytes() == want.tobytes()
    assert designs.sosfilt_zi(got).tobytes() == signal.sosfilt_zi(want).tobytes()


# -- the kernel, sosfiltfilt and detrend -----------------------------------------------------


def test_the_kernel_is_scipys_and_computes_the_cascade() -> None:
    assert sos.KERNEL_SOURCE in ("loaded", "file", "import")
    cascade = signal.butter(4, [20, 450], btype="bandpass", fs=2000, output="sos")
    x = np.random.default_rng(1).standard_normal((3, 2000))
    rows = x.copy()
    sos.filter_inplace(cascade, rows, np.zeros((3, 4, 2)))
    assert rows.tobytes() == signal.sosfilt(cascade, x, axis=-1).tobytes()
    kernel = sos._from_file()
    assert kernel is not None and sos._computes_a_cascade(kernel)
    rows = x.copy()
    kernel(cascade, rows, np.zeros((3, 4, 2)))
    assert rows.tobytes() == signal.sosfilt(cascade, x, axis=-1).tobytes()


def test_a_kernel_that_does_not_filter_is_refused() -> None:
    def nothing(s: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
        return None

    def no_state(s: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
        y, _ = signal.sosfilt(s, x, axis=-1, zi=np.moveaxis(zi, 0, 1))
        x[...] = y  # filters, but does not carry the state

    assert not sos._computes_a_cascade(nothing)
    assert not sos._computes_a_cascade(no_state)
    assert sos._computes_a_cascade(lambda s, x, zi: _public(s, x, zi))


def _public(s: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    y, zf = signal.sosfilt(s, x, axis=-1, zi=np.moveaxis(zi, 0, 1))
    x[...] = y
    zi[...] = np.moveaxis(zf, 1, 0)


def test_without_a_file_kernel_the_ordinary_import_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """scipy's layout changed (no extension file, or it fails to load alone): the kernel comes
    from the ordinary import; no kernel at all: the public ``sosfilt`` (tests elsewhere)."""

    def broken() -> None:
        raise ImportError("no such layout")

    monkeypatch.setattr(sos, "_from_file", broken)
    monkeypatch.delitem(sys.modules, "scipy.signal._sosfilt", raising=False)
    kernel, how = sos.load_kernel()
    assert how == "import" and kernel is not None and sos._computes_a_cascade(kernel)
    monkeypatch.setattr(sos, "_imported", broken)
    monkeypatch.delitem(sys.modules, "scipy.signal._sosfilt", raising=False)
    assert sos.load_kernel() == (None, "public")


@pytest.mark.parametrize("rate", [2000.0, 1000.0, 500.0])
def test_sosfiltfilt_is_scipys_bit_for_bit(cache: DesignCache, rate: float) -> None:
    """As ``crosstalk`` calls it (2-D, the EMG cascade, scipy's default pad) and as ``rhythm``
    does (1-D, a low-pass, a given pad), on several lengths."""
    rng = np.random.default_rng(int(rate))
    cascade = design_emg_filter(DetectorConfig(), rate, 50)
    for n in (100, 301, 2000):
        x = rng.standard_normal((3, n)) * 30.0 + np.linspace(0, 50, n)
        assert sos.sosfiltfilt(cascade, x).tobytes() == signal.sosfiltfilt(cascade, x, axis=1).tobytes()
    low = designs.butter_sos(2, 2.5, "lowpass", 20.0)
    for n in (4, 16, 17, 200):
        e = rng.uniform(1.0, 9.0, n)
        pad = min(n - 1, 15)
        assert (
            sos.sosfiltfilt(low, e, padlen=pad).tobytes() == signal.sosfiltfilt(low, e, padlen=pad).tobytes()
        )
    with pytest.raises(ValueError, match="padlen"):
        sos.sosfiltfilt(cascade, np.zeros((2, 10)))


def test_detrend_is_scipys_to_rounding() -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        rows, n = int(rng.integers(1, 5)), int(rng.integers(3, 3000))
        scale = 10.0 ** rng.uniform(-3, 4)
        x = rng.standard_normal((rows, n)) * scale + rng.uniform(-1e3, 1e3, (rows, 1)) * np.arange(n) / n
        want = signal.detrend(x, axis=1)
        np.testing.assert_allclose(sos.detrend_linear(x), want, rtol=0, atol=1e-9 * np.abs(x).max())


# -- the cache: miss, hit, corrupt, foreign ---------------------------------------------------


def _use_all(rate: float = 1000.0) -> np.ndarray:
    cascade = design_emg_filter(DetectorConfig(), rate, 50)
    designs.sosfilt_zi(cascade)
    return cascade


def test_a_miss_computes_and_stores_a_hit_computes_nothing(cache: DesignCache, tmp_path: Path) -> None:
    before = _counts()
    want = _use_all()
    missed = _delta(before)
    assert missed["computed"] >= 3 and missed["stored"] == 0  # band-pass, notches, steady state
    assert cache.path.is_file()
    designs.forget()  # a new process: nothing remembered, the file is there
    designs.use_store(DesignCache(cache.path.parent))
    before = _counts()
    assert _use_all().tobytes() == want.tobytes()
    assert _delta(before) == {"computed": 0, "stored": missed["computed"], "rejected": 0}


@pytest.mark.parametrize(
    "damage",
    [
        b"",  # empty
        b"not a zip at all\n" * 10,
        None,  # truncated: the first half of a real file
    ],
)
def test_a_corrupt_file_is_ignored_and_rebuilt(cache: DesignCache, damage: bytes | None) -> None:
    want = _use_all()
    data = cache.path.read_bytes()
    cache.path.write_bytes(data[: len(data) // 2] if damage is None else damage)
    designs.forget()
    designs.use_store(DesignCache(cache.path.parent))
    before = _counts()
    assert _use_all().tobytes() == want.tobytes()
    assert _delta(before)["computed"] >= 3 and _delta(before)["stored"] == 0
    assert len(DesignCache(cache.path.parent)._read()) == _delta(before)["computed"]  # rebuilt, readable


def _rewrite(path: Path, change: dict[str, np.ndarray]) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(change)
    with path.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def test_a_tampered_entry_another_format_and_an_implausible_design_are_not_used(cache: DesignCache) -> None:
    want = _use_all()
    with np.load(cache.path) as z:
        keys = [str(k) for k in z["keys"]]
        values = [z[f"v{i}"] for i in range(len(keys))]
    zi_at = next(i for i, k in enumerate(keys) if "/sosfilt_zi/" in k)
    # a changed value under the old digest: the cache drops it
    _rewrite(cache.path, {f"v{zi_at}": values[zi_at] * 1.5})
    assert keys[zi_at] not in DesignCache(cache.path.parent)._read()
    assert len(DesignCache(cache.path.parent)._read()) == len(keys) - 1
    # another layout of the file: nothing of it is used
    _rewrite(cache.path, {f"v{zi_at}": values[zi_at], "format": np.array(design_cache.FORMAT + 1)})
    assert DesignCache(cache.path.parent)._read() == {}
    # a writer with a valid digest but a wrong steady state (not ours, or a bug): designs refuse it
    wrong = values[zi_at] * 1.5
    digests = [
        design_cache._digest(k, wrong if i == zi_at else v)
        for i, (k, v) in enumerate(zip(keys, values, strict=True))
    ]
    _rewrite(
        cache.path,
        {f"v{zi_at}": wrong, "format": np.array(design_cache.FORMAT), "digests": np.array(digests)},
    )
    designs.forget()
    designs.use_store(DesignCache(cache.path.parent))
    before = _counts()
    assert _use_all().tobytes() == want.tobytes()
    zi = designs.sosfilt_zi(want)
    assert zi.tobytes() == signal.sosfilt_zi(want).tobytes()
    assert _delta(before) == {"computed": 1, "stored": len(keys) - 1, "rejected": 1}


def test_an_unstable_or_misshapen_section_is_refused(cache: DesignCache) -> None:
    key_sos = designs.butter_sos(2, 5.0, "lowpass", 200.0)
    designs.forget()
    ((key,),) = [[k for k in cache._read() if "/butter/" in k]]
    for bad in (key_sos * np.array([1, 1, 1, 1, 1, -3.0]), key_sos[:, :5].copy(), np.full((1, 6), np.nan)):
        cache.put(key, np.ascontiguousarray(bad))
        designs.forget()
        designs.use_store(DesignCache(cache.path.parent))
        before = _counts()
        assert designs.butter_sos(2, 5.0, "lowpass", 200.0).tobytes() == key_sos.tobytes()
        assert _delta(before) == {"computed": 1, "stored": 0, "rejected": 1}


def test_an_unwritable_cache_only_means_computing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would be")
    store = DesignCache(blocker / "neurospasm")
    previous = designs.use_store(store)
    designs.forget()
    try:
        assert _use_all().shape[1] == 6  # no exception
        assert store.get("anything") is None
    finally:
        designs.use_store(previous)
        designs.forget()


def test_the_default_directory_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert design_cache.default_dir() == tmp_path / "neurospasm"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the spec says
    assert design_cache.default_dir() == Path.home() / ".cache" / "neurospasm"


# -- a whole detect process ------------------------------------------------------------------

_PROBE = """
import sys
from ingest.commands.cli import main
rc = main(["detect", sys.argv[1]])
heavy = sorted(m for m in sys.modules if m in ("scipy.signal", "scipy.stats", "scipy.signal._signaltools"))
print("MODULES " + ",".join(heavy), file=sys.stderr)
sys.exit(rc)
"""


def _write_edf(path: Path, rate: int, seconds: float) -> None:
    import pyedflib

    rng = np.random.default_rng(3)
    n = int(seconds * rate)
    x = rng.standard_normal(n) * 3.0
    x[n // 2 : n // 2 + rate // 3] *= 40.0  # a burst
    x += 20.0 * np.sin(2 * np.pi * 50 * np.arange(n) / rate)
    w = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders(
            [{"label": "EMG 1", "dimension": "uV", "sample_frequency": rate, "physical_min": -1000.0,
              "physical_max": 1000.0, "digital_min": -32768, "digital_max": 32767, "transducer": "",
              "prefilter": ""}]
        )  # fmt: skip
        w.setStartdatetime(datetime(2026, 11, 1, 8, 0, 0))
        w.writeSamples([x])
    finally:
        w.close()


def test_detect_with_a_filled_cache_never_imports_scipy_signal(tmp_path: Path) -> None:
    edf = tmp_path / "short.edf"
    _write_edf(edf, 1000, 12.0)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}

    def run() -> tuple[str, list[str]]:
        p = subprocess.run(
            [sys.executable, "-c", _PROBE, str(edf)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(x for x in p.stderr.splitlines() if x.startswith("MODULES "))
        return p.stdout, [m for m in line.removeprefix("MODULES ").split(",") if m]

    cold_out, cold_modules = run()
    assert "scipy.signal" in cold_modules  # the empty cache: scipy designed the filters
    assert (tmp_path / "xdg" / "neurospasm" / design_cache.FILE_NAME).is_file()
    warm_out, warm_modules = run()
    assert warm_modules == []
    assert warm_out == cold_out and len(warm_out.splitlines()) >= 1
    assert all(json.loads(line)["type"] for line in warm_out.splitlines())
    # the cache file damaged: the process still gives the same events (scipy designs again)
    (tmp_path / "xdg" / "neurospasm" / design_cache.FILE_NAME).write_bytes(b"PK\x03\x04 broken")
    again_out, again_modules = run()
    assert again_out == cold_out and "scipy.signal" in again_modules
    with zipfile.ZipFile(tmp_path / "xdg" / "neurospasm" / design_cache.FILE_NAME) as z:
        assert z.testzip() is None  # rewritten whole
