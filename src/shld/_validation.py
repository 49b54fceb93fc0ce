"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` (or ``TypeError``) whose message names the argument,
what is allowed, and the value that was given, so that users never see a traceback
from deep inside numpy.
"""

from __future__ import annotations

import math
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


def check_finite_array(name: str, value: Any, *, dtype: Any = np.float64, ndim: int | None = None,
                       last_dim: int | None = None) -> np.ndarray:
    """Convert to an array of ``dtype`` and require finite entries and an expected shape.

    ``ndim`` fixes the number of axes; ``last_dim`` fixes the size of the last axis
    (the parameter dimension ``d`` of a batch ``(..., d)``).
    """
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
    if src is None or isinstance(src, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(src)
    raise TypeError(
        f"`rng` must be a numpy.random.Generator, an int seed or None, got {_short(src)}"
    )
