"""When a quantity is computed: every k steps, log-spaced, or custom.

A schedule is a callable ``step -> bool`` (steps count from 0, one per optimizer step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from shld._validation import check_int, check_positive

#: Steps checked by :func:`as_schedule` to reject a custom schedule that never fires.
PROBE_STEPS = 100_000


class Every:
    """Fires at ``start, start + k, start + 2k, ...``."""

    def __init__(self, k: int, start: int = 0):
        self.k = check_int("schedule", k, minimum=1)
        self.start = check_int("start", start, minimum=0)

    def __call__(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.k == 0

    def __repr__(self):
        return f"Every({self.k}, start={self.start})"


class LogSpaced:
    """Fires at ``round(10**(j / per_decade))`` for j = 0, 1, ... (plus step 0): dense early, sparse late."""

    def __init__(self, per_decade: float = 10.0, max_step: int = 10**9):
        self.per_decade = check_positive("per_decade", per_decade)
        steps = {0}
        j = 0
        while True:
            s = int(round(10 ** (j / self.per_decade)))
            if s > max_step:
                break
            steps.add(s)
            j += 1
        self.steps = frozenset(steps)

    def __call__(self, step: int) -> bool:
        return step in self.steps

    def __repr__(self):
        return f"LogSpaced(per_decade={self.per_decade})"


class Steps:
    """Fires at the given steps."""

    def __init__(self, steps: Iterable[int], name: str = "schedule"):
        self.steps = frozenset(check_int(name, s, minimum=0) for s in steps)
        if not self.steps:
            raise ValueError(f"`{name}` never fires: got an empty list of steps")

    def __call__(self, step: int) -> bool:
        return step in self.steps


def as_schedule(spec, name: str = "schedule") -> Callable[[int], bool] | None:
    """``int k`` → every k steps; ``"log"`` → log-spaced; iterable → those steps; callable → itself.

    ``None`` means never (allowed only for optional quantities). A schedule that never fires in
    the first :data:`PROBE_STEPS` steps is rejected with a message naming the argument.
    """
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise TypeError(f"`{name}` must be an int, 'log', a list of steps or a callable, got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"`{name}` must be >= 1 (every k steps), got {spec}")
        return Every(spec)
    if isinstance(spec, str):
        if spec != "log":
            raise ValueError(f"`{name}` must be an int, 'log', a list of steps or a callable, got {spec!r}")
        return LogSpaced()
    if isinstance(spec, (Every, LogSpaced, Steps)):
        return spec
    if callable(spec):
        if not any(bool(spec(s)) for s in _probe()):
            raise ValueError(f"`{name}` never fires: {spec!r} returned False for every step in "
                             f"0..{PROBE_STEPS - 1}")
        return spec
    try:
        return Steps(list(spec), name=name)
    except TypeError:
        raise TypeError(f"`{name}` must be an int, 'log', a list of steps or a callable, "
                        f"got {type(spec).__name__}") from None


def _probe():
    # dense start, then geometric: cheap even for slow callables
    yield from range(min(1000, PROBE_STEPS))
    s = 1000.0
    while s < PROBE_STEPS:
        yield int(s)
        s *= 1.01
    yield PROBE_STEPS - 1


__all__ = ["Every", "LogSpaced", "Steps", "as_schedule"]
