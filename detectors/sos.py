"""Running SOS cascades: scipy's compiled kernel, loaded without ``scipy.signal``'s ``__init__``.

The kernel behind ``scipy.signal.sosfilt`` is a small Cython extension
(``scipy/signal/_sosfilt``) that needs only numpy. Importing it the ordinary way first runs
``scipy/signal/__init__.py``, which imports scipy.stats, interpolate, optimize and more: most
of a second of CPU that a detect process would otherwise spend before reading its first sample.
So the extension file is loaded directly from the installed scipy. That relies on scipy's
private layout, so it is guarded: any failure, or a kernel that does not compute the cascade
it is given (checked once against a direct-form-II reference), falls back to the ordinary
import, and without any kernel ``filter_inplace`` uses the public ``scipy.signal.sosfilt``
(same arithmetic; tests compare the paths bit for bit). The path chosen changes the cost only.

``sosfiltfilt`` and ``detrend_linear`` are scipy's ``sosfiltfilt`` (odd padding) and linear
``detrend`` written with the same kernel and the same operations, for the burst judgements that
need them (``crosstalk``, ``rhythm``); tests check them against scipy's on many inputs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable

import numpy as np

from detectors import designs

Kernel = Callable[[np.ndarray, np.ndarray, np.ndarray], None]
_NAME = "scipy.signal._sosfilt"


def _from_file() -> Kernel | None:
    """The kernel from the extension file in the installed scipy, scipy.signal not imported."""
    import scipy  # the package: numpy and a few small modules, no subpackage

    for base in scipy.__path__:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(base, "signal", "_sosfilt" + suffix)
            if not os.path.isfile(path):
                continue
            spec = importlib.util.spec_from_file_location(_NAME, path)
            if spec is None or spec.loader is None:
                return None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return getattr(module, "_sosfilt", None)
    return None


def _imported() -> Kernel | None:
    """The kernel through the ordinary import (runs scipy/signal/__init__)."""
    from scipy.signal._sosfilt import _sosfilt

    return _sosfilt


def _computes_a_cascade(kernel: Kernel) -> bool:
    """Does ``kernel(sos, x, zi)`` filter the rows of ``x`` in place through ``sos`` from state
    ``zi`` (signals, sections, 2), updating ``zi``? Checked on a small case against a transposed
    direct form II written out here (to rounding: the operations' order is the kernel's own)."""
    sos = np.array([[0.2, 0.3, 0.1, 1.0, -0.6, 0.25], [1.0, -1.0, 0.5, 1.0, 0.1, 0.05]])
    x = np.array([[1.0, -2.0, 0.5, 3.0, 0.0, -1.0, 2.0, 0.25], [0.5, 0.0, -1.5, 1.0, 2.0, 0.0, -0.5, 1.0]])
    zi = np.array([[[0.1, -0.2], [0.3, 0.05]], [[0.0, 0.4], [-0.1, 0.2]]])
    want, zf = x.copy(), zi.copy()
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            v = want[r, i]
            for s in range(sos.shape[0]):
                b0, b1, b2, _a0, a1, a2 = sos[s]
                y = b0 * v + zf[r, s, 0]
                zf[r, s, 0] = b1 * v - a1 * y + zf[r, s, 1]
                zf[r, s, 1] = b2 * v - a2 * y
                v = y
            want[r, i] = v
    got, state = x.copy(), zi.copy()
    kernel(sos, got, state)
    close = np.allclose(got, want, rtol=1e-12, atol=1e-12) and np.allclose(state, zf, rtol=1e-12, atol=1e-12)
    return bool(close)


def load_kernel() -> tuple[Kernel | None, str]:
    """The compiled kernel and how it was found: ``loaded`` (scipy.signal had imported it),
    ``file`` (its extension loaded alone), ``import`` (the ordinary import), or (None, ``public``)
    when no kernel works here (``filter_inplace`` then calls ``scipy.signal.sosfilt``)."""
    module = sys.modules.get(_NAME)
    found: list[tuple[str, Callable[[], Kernel | None]]] = [
        ("loaded", lambda: getattr(module, "_sosfilt", None)),
        ("file", _from_file),
        ("import", _imported),
    ]
    for how, find in found if module is not None else found[1:]:
        try:
            kernel = find()
            if kernel is not None and _computes_a_cascade(kernel):
                return kernel, how
        except Exception:  # any failure of one way to the kernel: try the next one
            continue
    return None, "public"


def _float64_kernel(kernel: Kernel | None) -> Kernel | None:
    """The kernel's float64 specialisation (a Cython fused function's, chosen once instead of
    on every call by inspecting its arguments), or None when it has none that works."""
    if kernel is None:
        return None
    try:
        special = kernel.__signatures__["double"]  # type: ignore[attr-defined]
        return special if _computes_a_cascade(special) else None
    except Exception:  # not a fused function (another scipy build): the kernel dispatches
        return None


#: scipy's compiled SOS kernel (None: use the public ``sosfilt``); how it was found.
_sosfilt, KERNEL_SOURCE = load_kernel()
#: its float64 specialisation (None: call ``_sosfilt`` itself)
_sosfilt_f64 = _float64_kernel(_sosfilt)


def filter_inplace(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """Filter rows of ``x`` (signals, samples) in place, carrying ``zi`` (signals, sections, 2).

    Calls scipy's compiled SOS kernel directly when available: the public ``sosfilt`` spends more
    time validating and transposing a 50 ms block than filtering it. Same arithmetic either way.
    """
    if _sosfilt_f64 is not None:
        try:
            _sosfilt_f64(sos, x, zi)
            return
        except ValueError:  # not all float64 (checked before any sample is touched)
            pass
    if _sosfilt is not None:
        _sosfilt(sos, x, zi)
        return
    from scipy import signal

    # The public function wants the state as (sections, signals, 2).
    y, zf = signal.sosfilt(sos, x, axis=-1, zi=np.moveaxis(zi, 0, 1))
    x[...] = y
    zi[...] = np.moveaxis(zf, 1, 0)


def _odd_ext(x: np.ndarray, n: int) -> np.ndarray:
    """``scipy.signal._arraytools.odd_ext(x, n, axis=-1)``: point-reflected ends, same operations."""
    left = 2 * x[..., 0:1] - x[..., n:0:-1]
    right = 2 * x[..., -1:] - x[..., -2 : -(n + 2) : -1]
    return np.concatenate((left, x, right), axis=-1)


def sosfiltfilt(sos: np.ndarray, x: np.ndarray, padlen: int | None = None) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, x, axis=-1, padtype="odd", padlen=padlen)`` for float64
    ``x`` of 1 or 2 dimensions: forward and backward through the kernel, each pass started at
    the steady state of its first sample (``designs.sosfilt_zi``), with scipy's default pad of
    three times the cascade's taps."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    n_sections = sos.shape[0]
    ntaps = 2 * n_sections + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    edge = 3 * ntaps if padlen is None else padlen
    if x.shape[-1] <= edge:
        raise ValueError(f"The length of the input vector x must be greater than padlen, which is {edge}.")
    ext = _odd_ext(x, edge) if edge > 0 else x
    rows = np.array(ext.reshape(-1, ext.shape[-1]), dtype=np.float64, order="C")  # filtered in place
    zi = designs.sosfilt_zi(sos)
    state = np.ascontiguousarray(zi[None, :, :] * rows[:, 0:1, None])
    filter_inplace(sos, rows, state)
    back = np.array(rows[:, ::-1], order="C")
    state = np.ascontiguousarray(zi[None, :, :] * back[:, 0:1, None])
    filter_inplace(sos, back, state)
    y = back[:, ::-1]
    if edge > 0:
        y = y[:, edge:-edge]
    return y.reshape((*x.shape[:-1], y.shape[-1]))


def detrend_linear(x: np.ndarray) -> np.ndarray:
    """``scipy.signal.detrend(x, axis=-1)`` (type linear, no breakpoints) of float64 ``x`` (rows,
    samples): each row less its least-squares line, fitted as scipy fits it (the same design
    matrix, LAPACK's SVD-based ``gelsd`` through numpy instead of scipy.linalg)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    data = np.moveaxis(x, -1, 0).reshape(n, -1).copy()
    a = np.ones((n, 2))
    a[:, 0] = np.arange(1, n + 1, dtype=np.float64) / n
    coef = np.linalg.lstsq(a, data, rcond=None)[0]
    data = data - a @ coef
    return np.moveaxis(data.reshape((n, *x.shape[:-1])), 0, -1)
