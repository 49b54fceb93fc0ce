"""What a Langevin run holds and returns: the ensemble's state (:class:`EnsembleState`, on the run's
backend, saved and restored by ``to_arrays``/``from_arrays`` for an exact resume) and the result
(:class:`SimulationResult`, numpy arrays on the host whatever the backend)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shld.dynamics.backends import NumpyBackend, make_backend

#: per-walker status: 0 = ok, 1 = went non-finite (detected at a check or a record)
STATUS_OK, STATUS_NONFINITE = 0, 1


class NonFiniteError(FloatingPointError):
    """Raised with ``on_nonfinite="raise"``; ``.result`` holds what was recorded so far."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


@dataclass
class EnsembleState:
    """Everything needed to continue a run bit for bit. The arrays live on the run's backend (numpy
    arrays, or torch tensors on the run's device); ``rng`` is that backend's generator."""

    theta: Any
    step: int
    rng: Any
    momentum: Any = None
    hit: Any = None
    first_passage_time: Any = None
    status: Any = None
    failure_step: Any = None
    controller: dict = field(default_factory=dict)
    #: the 64-bit key of the many-steps kernel's counter-based noise (a one-element int64 tensor on the
    #: run's device), drawn from ``rng`` at the kernel's first step; None until then
    philox_key: Any = None

    @property
    def backend(self) -> str:
        """"numpy" or "torch": the backend whose arrays and generator this state holds."""
        return "numpy" if isinstance(self.theta, np.ndarray) else "torch"

    def to_arrays(self) -> dict[str, np.ndarray]:
        """numpy arrays for ``np.savez`` (a numpy RNG state travels as a JSON string, a torch one as
        its byte state; a torch state also records its dtype and device). Every array is a copy: a
        snapshot kept in memory stays at its step while the run goes on."""
        if self.backend == "numpy":
            bk = NumpyBackend(self.theta.dtype)
            out = {"theta": self.theta.copy(), "step": np.array(self.step)}
        else:
            bk = make_backend("torch", str(self.theta.dtype).replace("torch.", ""), self.theta.device)
            out = {"theta": bk.to_numpy_copy(self.theta), "step": np.array(self.step),
                   "backend": np.array("torch"), "device": np.array(str(self.theta.device))}
        out.update(bk.generator_state(self.rng))
        for name in ("momentum", "hit", "first_passage_time", "status", "failure_step", "philox_key"):
            val = getattr(self, name)
            if val is not None:
                out[name] = bk.to_numpy_copy(val)
        for k, v in self.controller.items():
            out["controller__" + k] = np.array(_host(v))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, device=None) -> EnsembleState:
        """The state saved by :meth:`to_arrays`; a torch state goes back to its saved device unless
        ``device`` says otherwise (its generator state must suit that device type)."""
        ctrl = {k.split("__", 1)[1]: np.array(v) for k, v in arrays.items() if k.startswith("controller__")}
        get = lambda k: np.array(arrays[k]) if k in arrays else None  # noqa: E731
        if str(arrays["rng_kind"]) == "torch":
            theta = np.array(arrays["theta"])
            bk = make_backend("torch", theta.dtype.name, device if device is not None else str(arrays["device"]))
            conv = lambda k: None if k not in arrays else bk.asarray(np.array(arrays[k]),  # noqa: E731
                                                                     np.array(arrays[k]).dtype.name)
            return cls(theta=bk.asarray(theta), step=int(arrays["step"]),
                       rng=bk.generator_from_state(np.array(arrays["rng_state"])), momentum=conv("momentum"),
                       hit=conv("hit"), first_passage_time=conv("first_passage_time"), status=conv("status"),
                       failure_step=conv("failure_step"), controller=ctrl, philox_key=conv("philox_key"))
        bitgen = getattr(np.random, str(arrays["rng_kind"]))()
        bitgen.state = json.loads(str(arrays["rng_state"]))
        return cls(theta=np.array(arrays["theta"]), step=int(arrays["step"]),
                   rng=np.random.Generator(bitgen), momentum=get("momentum"), hit=get("hit"),
                   first_passage_time=get("first_passage_time"), status=get("status"),
                   failure_step=get("failure_step"), controller=ctrl)


@dataclass
class SimulationResult:
    """Output of :func:`simulate`, whatever the backend: numpy arrays on the host. ``records[name]`` has
    one row per record time ``times``. ``state`` is the run's :class:`EnsembleState` (on the run's
    backend and device), or for a chunked run the list of its chunks' states."""

    times: np.ndarray
    steps: np.ndarray
    records: dict[str, np.ndarray]
    final_theta: np.ndarray
    first_passage_time: np.ndarray
    hit: np.ndarray
    status: np.ndarray
    failure_step: np.ndarray
    D_history: np.ndarray
    interventions: list[tuple[int, np.ndarray]]
    state: EnsembleState | list
    dt: float
    wall_time: float
    trajectory: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def n_walkers(self) -> int:
        return self.final_theta.shape[0]

    @property
    def ok(self) -> np.ndarray:
        return self.status == STATUS_OK

    @property
    def censored(self) -> np.ndarray:
        """Walkers that never reached the target (and did not fail)."""
        return ~self.hit & self.ok


def _host(x):
    """A numpy view of x (torch tensors, on any device, come to the host)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "detach"):
        return x
    return x.detach().cpu().numpy()
