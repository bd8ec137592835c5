"""Filter designs (SOS sections, steady states): scipy.signal's own, computed once per parameters.

Why this exists: ``import scipy.signal`` costs most of a second of CPU (its ``__init__`` pulls in
scipy.stats, interpolate, optimize, windows...), more than detecting a 20-minute single-channel
file takes. What the detector needs from it at run time is a handful of designs (Butterworth
sections, mains notches, their ``sosfilt_zi`` steady states), each a pure function of a few
numbers (order, band, rate), and the compiled SOS kernel (``detectors.sos``, loaded on its own).

scipy.signal stays the source of truth: every design here is the very array scipy returns for
those parameters, computed by scipy the first time they are seen, then remembered for the
process. With a store (``use_store``; the command line gives one on disk:
``ingest.files.design_cache``) it is remembered for later processes too, so a process that finds
all its designs stored never imports scipy.signal. A stored design is keyed by the parameters
and by the scipy and numpy versions that computed it, and is checked before use (shape, dtype,
finite, normalised and stable sections; a steady state must be one for its cascade): anything
else is recomputed by scipy, never trusted blindly. This module does no I/O itself (the
detector stays pure); a store is whatever the caller plugs in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import scipy  # the package only (cheap): its version keys the designs

#: Version of the design keys and of what a stored design holds; bump when either changes.
FORMAT = 1
_PREFIX = f"designs/{FORMAT}/scipy {scipy.__version__}/numpy {np.__version__}/"


class DesignStore(Protocol):
    """Somewhere designs outlive the process: ``get`` a stored array (None when absent),
    ``put`` a new one. Neither may raise for a storage problem (a store is only a shortcut)."""

    def get(self, key: str) -> np.ndarray | None: ...

    def put(self, key: str, value: np.ndarray) -> None: ...


_store: DesignStore | None = None
_memo: dict[str, np.ndarray] = {}
#: What happened to each design looked up (for tests and diagnostics): ``computed`` by scipy,
#: ``stored`` (found in the store and accepted), ``rejected`` (found but failed its check).
stats = {"computed": 0, "stored": 0, "rejected": 0}


def use_store(store: DesignStore | None) -> DesignStore | None:
    """Look designs up in (and add new ones to) ``store`` from now on; returns the previous one."""
    global _store
    previous, _store = _store, store
    return previous


def forget() -> None:
    """Drop the designs remembered by this process (the store keeps its own)."""
    _memo.clear()


def _design(key: str, compute: Callable[[], np.ndarray], valid: Callable[[np.ndarray], bool]) -> np.ndarray:
    """The design named ``key``: remembered, else stored and ``valid``, else computed by scipy.
    Always a fresh copy (callers scale sections in place)."""
    key = _PREFIX + key
    value = _memo.get(key)
    if value is None:
        store = _store
        if store is not None:
            value = store.get(key)
            if value is not None:
                ok = _well_formed(value) and valid(value)
                stats["stored" if ok else "rejected"] += 1
                if not ok:
                    value = None
        if value is None:
            value = np.ascontiguousarray(compute(), dtype=np.float64)
            stats["computed"] += 1
            if store is not None:
                store.put(key, value)
        value.setflags(write=False)
        _memo[key] = value
    return value.copy()


def _well_formed(value: object) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype == np.float64
        and value.ndim == 2
        and value.size > 0
        and bool(np.isfinite(value).all())
    )


def _sections_ok(sos: np.ndarray, n_sections: int) -> bool:
    """``n_sections`` rows of (b0, b1, b2, 1, a1, a2) with every pole inside the unit circle
    (the stability triangle |a2| < 1, |a1| < 1 + a2): what scipy's IIR designs always are."""
    if sos.shape != (n_sections, 6):
        return False
    a1, a2 = sos[:, 4], sos[:, 5]
    return bool((sos[:, 3] == 1.0).all() and (np.abs(a2) < 1.0).all() and (np.abs(a1) < 1.0 + a2).all())


def _sig() -> Any:
    """scipy.signal, imported only when a design must actually be computed."""
    from scipy import signal

    return signal


def preload() -> None:
    """Import scipy.signal now, so that a later design costs milliseconds, not the import.

    For long-running services that set up detectors while an event loop serves other work: called
    in a thread at start-up, it keeps the first device's set-up from holding the loop for the
    seconds the import takes on a loaded host (a worker's lease renewals run on that loop)."""
    _sig()


def _num(x: float) -> str:
    return repr(float(x))


def butter_sos(order: int, wn: float | Sequence[float], btype: str, fs: float) -> np.ndarray:
    """``scipy.signal.butter(order, wn, btype=btype, fs=fs, output="sos")``."""
    cut = ",".join(_num(w) for w in np.atleast_1d(wn))
    # scipy's sections: one per pole pair (a band filter of order N has 2N poles)
    n_sections = order if btype in ("bandpass", "bandstop") else (order + 1) // 2
    return _design(
        f"butter/{int(order)}/{cut}/{btype}/{_num(fs)}",
        lambda: _sig().butter(order, wn, btype=btype, fs=fs, output="sos"),
        lambda v: _sections_ok(v, n_sections),
    )


def notch_sos(f0: float, q: float, fs: float) -> np.ndarray:
    """``scipy.signal.iirnotch(f0, q, fs=fs)`` as one SOS row (b0, b1, b2, a0, a1, a2)."""

    def compute() -> np.ndarray:
        b, a = _sig().iirnotch(f0, q, fs=fs)
        return np.concatenate([b, a])[None, :]

    return _design(f"iirnotch/{_num(f0)}/{_num(q)}/{_num(fs)}", compute, lambda v: _sections_ok(v, 1))


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """``scipy.signal.sosfilt_zi(sos)`` (sections, 2): the state of a unit step's steady state."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    digest = hashlib.sha256(repr(sos.shape).encode() + sos.tobytes()).hexdigest()[:32]
    return _design(
        f"sosfilt_zi/{digest}",
        lambda: _sig().sosfilt_zi(sos),
        lambda v: v.shape == (sos.shape[0], 2) and _is_steady_state(sos, v),
    )


def _is_steady_state(sos: np.ndarray, zi: np.ndarray) -> bool:
    """Does the cascade ``sos``, started at ``zi`` and fed ones, stay where it is? (What
    ``sosfilt_zi`` means; a wrong or another cascade's state moves at the first sample.) A
    transposed direct form II, section by section, as scipy's kernel computes it."""
    z = zi.copy()
    for _ in range(2):
        x = 1.0
        for s in range(sos.shape[0]):
            b0, b1, b2, _a0, a1, a2 = sos[s]
            y = b0 * x + z[s, 0]
            z[s, 0] = b1 * x - a1 * y + z[s, 1]
            z[s, 1] = b2 * x - a2 * y
            x = y
    scale = max(1.0, float(np.abs(zi).max()))
    return bool(np.allclose(z, zi, rtol=0.0, atol=1e-9 * scale))
