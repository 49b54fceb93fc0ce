"""Boundary conditions of the Fokker–Planck box, per axis and side.

* ``"reflecting"`` (default): zero probability flux through the wall; mass is conserved.
* ``"periodic"``: the last cell of an axis is joined to the first (both sides of the axis
  must say so); the potential / drift should then be periodic too.
* ``"absorbing"``: ρ = 0 on the wall (Dirichlet), probability that reaches it is removed —
  the boundary of a first-passage problem.

A specification is a string (every side of every axis), a sequence with one entry per
axis, and each entry a string or a ``(lo, hi)`` pair of strings.
"""

from __future__ import annotations

BOUNDARIES = ("reflecting", "periodic", "absorbing")


def parse_boundary(boundary, dim: int) -> tuple[tuple[str, str], ...]:
    """Normalise ``boundary`` to ``((lo, hi), …)`` with one pair per axis."""

    def one(entry, where):
        if isinstance(entry, str):
            if entry not in BOUNDARIES:
                raise ValueError(f"`boundary`{where} must be one of {list(BOUNDARIES)}, got {entry!r}")
            return (entry, entry)
        try:
            lo, hi = entry
        except (TypeError, ValueError):
            raise ValueError(f"`boundary`{where} must be a string or a (lo, hi) pair of strings, "
                             f"got {entry!r}") from None
        pair = (one(lo, where)[0], one(hi, where)[0])
        if ("periodic" in pair) and pair != ("periodic", "periodic"):
            raise ValueError(f"`boundary`{where}: 'periodic' must apply to both sides of an axis, got {pair}")
        return pair

    if isinstance(boundary, str):
        return (one(boundary, ""),) * dim
    try:
        entries = list(boundary)
    except TypeError:
        raise ValueError(f"`boundary` must be one of {list(BOUNDARIES)} or one entry per axis, "
                         f"got {boundary!r}") from None
    if len(entries) != dim:
        raise ValueError(f"`boundary` must have one entry per axis (d={dim}), got {boundary!r}")
    return tuple(one(e, f"[{k}]") for k, e in enumerate(entries))


def is_conservative(spec: tuple[tuple[str, str], ...]) -> bool:
    """True when no side is absorbing (probability is conserved)."""
    return all(side != "absorbing" for pair in spec for side in pair)
