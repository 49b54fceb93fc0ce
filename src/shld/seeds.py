"""Seeds: the one rule by which every random stream in SHLD is derived.

A run has one root seed (a non-negative int, recorded in its ``config.json``). Every independent
stream below it — a sweep member, a chunk of walkers, a worker — is the
``numpy.random.SeedSequence(root, spawn_key=key)`` of a path ``key`` of non-negative ints, i.e. the
stream that ``SeedSequence(root).spawn(...)`` hands out along that path. Streams therefore depend
on the root and the key alone, never on which process or in which order they are drawn.

``seed=None`` means "fresh entropy": :func:`resolve_seed` draws a root from the operating system and
returns it, so the caller can record it and the run can be repeated. torch generators are seeded
from the same sequences (:func:`torch_seed`), so numpy and torch streams follow the same rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shld._validation import check_int


def resolve_seed(seed: int | None) -> int:
    """``seed`` checked (an int >= 0), or for ``None`` a fresh 63-bit root from OS entropy (record it)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(2, dtype=np.uint32).astype(np.uint64)
                   @ np.array([1 << 31, 1], dtype=np.uint64))
    return check_int("seed", seed, minimum=0)


def member_seed(root: int, *key: int) -> np.random.SeedSequence:
    """The stream of the member ``key`` (non-negative ints) of a run with root seed ``root``:
    ``SeedSequence(root, spawn_key=key)``, independent of scheduling."""
    root = check_int("root", root, minimum=0)
    key = tuple(check_int("key", k, minimum=0) for k in key)
    return np.random.SeedSequence(root, spawn_key=key)


def child_seed(seq: np.random.SeedSequence, j: int) -> np.random.SeedSequence:
    """Child ``j`` of ``seq``: ``SeedSequence(seq.entropy, spawn_key=seq.spawn_key + (j,))``, what a fresh
    ``seq.spawn`` hands out at position j, without advancing ``seq`` (``spawn`` counts its children, so
    calling it twice on one sequence gives different streams)."""
    j = check_int("j", j, minimum=0)
    return np.random.SeedSequence(seq.entropy, spawn_key=tuple(seq.spawn_key) + (j,), pool_size=seq.pool_size)


def as_seed_sequence(seed: int | np.random.SeedSequence | None) -> np.random.SeedSequence:
    """A ``SeedSequence`` from a root seed, a sequence (returned as is) or ``None`` (fresh entropy)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(resolve_seed(seed))


def numpy_rng(seed: int | np.random.SeedSequence | None) -> np.random.Generator:
    """``numpy.random.Generator`` (PCG64) of :func:`as_seed_sequence` ``(seed)``."""
    return np.random.default_rng(as_seed_sequence(seed))


def torch_seed(seq: int | np.random.SeedSequence) -> int:
    """A 63-bit torch seed from a ``SeedSequence`` (or a root seed): the sequence's first two 32-bit
    words, so torch streams are derived by the same rule as numpy ones."""
    seq = as_seed_sequence(seq)
    return int(seq.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1 << 31, 1], dtype=np.uint64))


def torch_generator(seq: int | np.random.SeedSequence, device: Any = "cpu"):
    """``torch.Generator`` on ``device`` seeded with :func:`torch_seed` ``(seq)``."""
    import torch

    return torch.Generator(device=device).manual_seed(torch_seed(seq))


__all__ = ["resolve_seed", "member_seed", "child_seed", "as_seed_sequence", "numpy_rng", "torch_seed",
           "torch_generator"]
