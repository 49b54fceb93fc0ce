"""First-passage targets the engine can see inside: a target given as data instead of a callable.

``simulate(..., target=...)`` takes any callable θ (N, d) → bool (N,). A :class:`HalfSpace` is such a
callable too, and it also says what it is (:meth:`HalfSpace.halfspace`), so the many-steps GPU kernel
(:mod:`shld.dynamics.triton_steps`) can record first passages inside its launch instead of stopping
after every step to call the target. The escape and Kramers experiments' targets are half-spaces:
``HalfSpace(axis=0, threshold=x_right)`` is ``lambda th: th[:, 0] >= x_right``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shld._validation import check_int, check_real


@dataclass(frozen=True)
class HalfSpace:
    """θ_axis ≥ threshold (``above=True``) or θ_axis ≤ threshold (``above=False``), in θ's units."""

    axis: int
    threshold: float
    above: bool = True

    def __post_init__(self):
        check_int("axis", self.axis, minimum=0)
        check_real("threshold", self.threshold)
        if not isinstance(self.above, bool):
            raise TypeError(f"`above` must be True or False, got {self.above!r}")

    def __call__(self, theta):
        if theta.shape[-1] <= self.axis:
            raise ValueError(f"HalfSpace `axis`={self.axis} needs θ with more than {self.axis} coordinates, "
                             f"got shape {tuple(theta.shape)}")
        x = theta[:, self.axis]
        return x >= self.threshold if self.above else x <= self.threshold

    def halfspace(self) -> tuple[int, float, bool]:
        """(axis, threshold, above): the description the GPU kernel reads."""
        return self.axis, float(self.threshold), self.above
