"""Progress display: the one place SHLD draws progress bars (tqdm on stderr).

Long work (a simulation, a sweep, a training run) calls :func:`progress_bar`; with ``enabled=False``
it gets a bar that does nothing, so callers never branch on whether progress is shown.
"""

from __future__ import annotations

from typing import Any


class _NoBar:
    """The do-nothing bar handed out when progress is off."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int | None, desc: str, unit: str = "it", *, enabled: bool = True, initial: int = 0,
                 leave: bool = False) -> Any:
    """A progress bar of ``total`` ``unit`` s labelled ``desc`` (a no-op when ``enabled`` is false).
    Use it as a context manager or call ``close()``; refreshes at most twice a second."""
    if not enabled:
        bar = _NoBar()
        bar.n = initial
        return bar
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, mininterval=0.5, leave=leave)


__all__ = ["progress_bar"]
