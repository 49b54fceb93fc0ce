"""Landscapes registered by name, so the CLI and configs can say ``double-well``."""

from __future__ import annotations

from collections.abc import Callable

from shld.landscapes.base import Landscape

_REGISTRY: dict[str, Callable[..., Landscape]] = {}


def register_landscape(name: str):
    """Class decorator: make ``cls`` constructible as ``make_landscape(name, **kwargs)``."""

    def deco(cls):
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def available_landscapes() -> list[str]:
    return sorted(_REGISTRY)


def make_landscape(name: str, **kwargs) -> Landscape:
    """Build a registered landscape; an unknown name lists the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(
            f"`name` must be one of {available_landscapes()}, got {name!r}"
        )
    return _REGISTRY[name](**kwargs)
