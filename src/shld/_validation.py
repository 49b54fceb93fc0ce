"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` (or ``TypeError``) whose message names the argument,
what is allowed, and the value that was given, so that users never see a traceback
from deep inside numpy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np


def _short(value: Any) -> str:
    text = np.array2string(value, threshold=6) if isinstance(value, np.ndarray) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_real(name: str, value: Any) -> float:
    """Return ``value`` as a float; reject non-numbers and NaN."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number, got {_short(value)}") from None
    if math.isnan(x):
        raise ValueError(f"`{name}` must not be NaN, got {value!r}")
    return x


def check_positive(name: str, value: Any, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """Return ``value`` as a float, requiring ``value > 0`` (or ``>= 0``)."""
    x = check_real(name, value)
    if not allow_inf and math.isinf(x):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    if allow_zero and x < 0:
        raise ValueError(f"`{name}` must be >= 0, got {value!r}")
    if not allow_zero and x <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    return x


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int (bools rejected), optionally bounded below."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"`{name}` must be an integer, got {_short(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Require ``value`` to be one of ``choices``; the message lists them."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value


def check_names(name: str, value: Any, allowed: Iterable[str]) -> tuple[str, ...]:
    """Return ``value`` as a tuple of names drawn from ``allowed``; a single string is one name
    (never split into letters). Unknown names are refused with the allowed ones listed."""
    allowed = list(allowed)
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a name or a sequence of names from {allowed}, "
                        f"got {_short(value)}") from None
    bad = [v for v in names if not isinstance(v, str) or v not in allowed]
    if bad:
        raise ValueError(f"`{name}` must be drawn from {allowed}, got {bad}")
    return names


def available_memory_bytes() -> int | None:
    """Memory the process can still allocate without swapping: psutil's ``available`` when psutil is
    installed, else ``MemAvailable`` from /proc/meminfo, else free pages from ``os.sysconf``;
    ``None`` when none of these can be read."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return int(psutil.virtual_memory().available)
        except Exception:   # pragma: no cover - exotic platforms
            pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):   # pragma: no cover - non-POSIX
        return None


def check_memory(what: str, n_bytes: float, *, available: int | None = None) -> None:
    """Refuse, before anything is allocated, work whose arrays need more memory than is available.

    ``what`` describes the request in the user's terms (naming the argument and its value and how
    the bytes were counted); ``available`` defaults to :func:`available_memory_bytes`."""
    avail = available_memory_bytes() if available is None else int(available)
    if avail is not None and n_bytes > avail:
        raise MemoryError(f"{what} needs about {n_bytes / 2**30:,.1f} GiB, but only "
                          f"{avail / 2**30:,.1f} GiB of memory is available")


def check_finite_array(name: str, value: Any, *, dtype: Any = np.float64, ndim: int | None = None,
                       last_dim: int | None = None) -> np.ndarray:
    """Convert to an array of ``dtype`` and require finite entries and an expected shape.

    ``ndim`` fixes the number of axes; ``last_dim`` fixes the size of the last axis
    (the parameter dimension ``d`` of a batch ``(..., d)``).
    """
    if np.iscomplexobj(value):
        raise TypeError(f"`{name}` must be real, got a complex array (dtype {np.asarray(value).dtype}): "
                        f"{_short(np.asarray(value))}; pass its .real explicitly if the imaginary part "
                        "is to be dropped")
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be an array of real numbers, got {_short(value)}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-dimensional, got shape {arr.shape}")
    if last_dim is not None and (arr.ndim == 0 or arr.shape[-1] != last_dim):
        raise ValueError(
            f"`{name}` must have last axis of size d={last_dim}, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"`{name}` must be finite, found {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )
    return arr


def as_generator(rng: Any = None, seed: Any = None) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from ``rng`` (Generator/int/SeedSequence) or ``seed``.

    Never touches numpy's global state. ``rng`` wins when both are given.
    """
    src = rng if rng is not None else seed
    if isinstance(src, np.random.Generator):
        return src
    if isinstance(src, (int, np.integer)) and not isinstance(src, bool) and src < 0:
        name = "rng" if rng is not None else "seed"
        raise ValueError(f"`{name}` must be a non-negative integer seed, got {src}")
    if src is None or isinstance(src, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(src)
    raise TypeError(
        f"`rng` must be a numpy.random.Generator, an int seed or None, got {_short(src)}"
    )
