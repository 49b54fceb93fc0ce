"""The ensemble driver: N walkers × d dimensions advanced together, one Python loop over time.

    result = simulate(landscape, theta0, D=0.1, dt=1e-3, n_steps=10_000, seed=0)
    result = simulate(landscape, theta0, ..., backend="torch", device="cuda", dtype="float32")

One driver for every array backend (:mod:`shld.dynamics.backends`: numpy, or torch on CPU/GPU): the
records, targets and first passage, non-finite handling, the controller, schedules, BAOAB, resume and
progress are the same code; the result is a :class:`SimulationResult` (numpy arrays) whatever the
backend. A landscape runs on the backends it declares (``landscape.backends()``) through its kernels
(``landscape.kernels(backend)``). Ensembles larger than a memory budget run in chunks
(``max_memory=``), and chunks can be spread over an executor's workers (``executor=``, any object with
``map(fn, items)``); chunk seeds are spawned from the run seed (see :func:`simulate`).

Dynamics (overdamped, default): dθ = −∇L(θ) dt + √(2D) dW, discretised by Euler–Maruyama with
time step ``dt`` (t = step·dt; an SGD step of learning rate η is dt = η). D is a temperature in loss
units: the stationary law is ρ*(θ) ∝ exp(−L(θ)/D). ``integrator="baoab"`` switches to underdamped
Langevin with friction γ (see :mod:`shld.dynamics.integrators`).

What is kept: ensemble statistics every ``record_every`` steps (by default about 50 records spread over
the run, at most one every 20 steps, and one at the last step; never the full trajectory unless
``store_trajectory=True``), per-walker first-passage times into ``target`` (``inf`` = censored),
per-walker status (0 = ok, 1 = went non-finite) with the step where the failure was detected: θ is
checked every ``check_every`` steps, the loss and gradient of the live walkers at every record.
Randomness: one generator per run (numpy: ``numpy.random.Generator``; torch: a ``torch.Generator``
seeded from the run seed by :func:`shld.seeds.torch_seed`, the package's one rule); the same seed gives the same
bits within one backend, dtype and device.
Resuming: ``SimulationResult.state`` can be saved (``state.to_arrays()``) and passed back as
``state=`` to continue exactly where the run stopped.
"""

from __future__ import annotations

import json
import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shld._validation import (
    check_choice,
    check_finite_array,
    check_int,
    check_memory,
    check_names,
    check_positive,
)
from shld.dynamics.backends import NumpyBackend, make_backend
from shld.dynamics.backends import _mean_std as _mean_std  # noqa: F401  (re-exported for tests)
from shld.dynamics.backends import _median as _median  # noqa: F401
from shld.dynamics.controllers import AdaptiveNoise
from shld.dynamics.integrators import BAOAB, EulerMaruyama, make_integrator
from shld.dynamics.schedules import Constant, as_schedule
from shld.landscapes.base import Landscape
from shld.observables.consolidation import consolidation_ratio_from_norm2

OBSERVABLES = ("loss", "C", "grad_norm2", "mean", "var", "D")
STATUS_OK, STATUS_NONFINITE = 0, 1
#: Default record schedule (``record_every=None``): about ``DEFAULT_RECORDS`` records spread over each
#: :meth:`Simulation.advance` call (every ⌈n_steps/50⌉ steps), never more often than every
#: ``MIN_RECORD_EVERY`` steps, plus one at the last step. A record costs one to two steps' worth of
#: normals (the loss of every walker, the median of C), so recording stays within a few per cent of a
#: run of any length (docs/benchmarks.md); ask for more with ``record_every``.
DEFAULT_RECORDS = 50
MIN_RECORD_EVERY = 20
_INF = float("inf")


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
        its byte state; a torch state also records its dtype and device)."""
        if self.backend == "numpy":
            bk = NumpyBackend(self.theta.dtype)
            out = {"theta": self.theta, "step": np.array(self.step)}
        else:
            bk = make_backend("torch", str(self.theta.dtype).replace("torch.", ""), self.theta.device)
            out = {"theta": bk.to_numpy(self.theta), "step": np.array(self.step),
                   "backend": np.array("torch"), "device": np.array(str(self.theta.device))}
        out.update(bk.generator_state(self.rng))
        for name in ("momentum", "hit", "first_passage_time", "status", "failure_step", "philox_key"):
            val = getattr(self, name)
            if val is not None:
                out[name] = bk.to_numpy(val)
        for k, v in self.controller.items():
            out["controller__" + k] = _host(v)
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


class Simulation:
    """A configured Langevin run over an ensemble; :meth:`advance` moves a state forward.

    ``backend`` ("numpy" | "torch"), ``device`` (torch: "cpu", "cuda", "cuda:<i>") and ``dtype``
    (float32 | float64) choose the arrays the run lives on (:mod:`shld.dynamics.backends`); the
    landscape must list the backend in ``landscape.backends()``. Callables the run calls on θ
    (``target``, a position-dependent ``preconditioner``/``divergence``) receive that backend's arrays."""

    def __init__(self, landscape: Landscape, D=0.1, dt: float = 1e-3, *, integrator: str = "euler",
                 friction: float = 1.0, preconditioner=None, divergence=None,
                 record_every: int | None = None, observables=("loss", "C"),
                 record_walkers: bool = False, store_trajectory: bool = False,
                 target: Callable | None = None, stop_when_all_hit: bool = False,
                 controller: AdaptiveNoise | None = None, dtype=np.float64,
                 on_nonfinite: str = "record", check_every: int = 100, track_walkers: int = 0,
                 backend: str = "numpy", device=None, step_kernel: str = "auto"):
        if not isinstance(landscape, Landscape):
            raise TypeError(f"`landscape` must be a shld Landscape, got {type(landscape).__name__}; "
                            "wrap callables with shld.landscapes.FunctionLandscape")
        self.landscape = landscape
        self.schedule = as_schedule(D)
        self.dt = check_positive("dt", dt)
        self.integrator = make_integrator(integrator, friction=friction, preconditioner=preconditioner,
                                          divergence=divergence)
        self.record_every = None if record_every is None else check_int("record_every", record_every,
                                                                         minimum=1)
        self.observables = check_names("observables", observables, OBSERVABLES)
        self.record_walkers = bool(record_walkers)
        self.store_trajectory = bool(store_trajectory)
        if target is not None and not callable(target):
            raise TypeError(f"`target` must be callable theta(N, d) -> bool(N,), got {target!r}")
        self.target = target
        self.stop_when_all_hit = bool(stop_when_all_hit)
        if controller is not None and not isinstance(controller, AdaptiveNoise):
            raise TypeError(f"`controller` must be an AdaptiveNoise, got {controller!r}")
        self.controller = controller
        self.backend = make_backend(backend, dtype, device)
        self.dtype = np.dtype(self.backend.dtype_name)
        supported = tuple(landscape.backends())
        if self.backend.name not in supported:
            raise ValueError(f"`backend`={self.backend.name!r} is not supported by landscape "
                             f"{type(landscape).__name__} ({landscape.name!r}); it supports {list(supported)}")
        self.kernels = landscape.kernels(self.backend)
        # Where per-walker C and the controller's state live: on the GPU for a CUDA run (copying N values
        # to the host every step would cost more than the step); in host numpy for a torch run on the CPU
        # (a CPU tensor is shared with numpy for free, and numpy's masked updates ran 2-5x faster than
        # torch's at 10^5 walkers); with the walkers on numpy
        self.walkers_c_on_host = self.backend.name == "torch" and self.backend.device.type != "cuda"
        self.walker_backend = NumpyBackend(np.float64) if self.walkers_c_on_host else self.backend
        self.on_nonfinite = check_choice("on_nonfinite", on_nonfinite, ["record", "raise"])
        self.check_every = check_int("check_every", check_every, minimum=1)
        self.track_walkers = check_int("track_walkers", track_walkers, minimum=0)
        self.step_kernel = self._choose_step_kernel(check_choice("step_kernel", step_kernel,
                                                                 ["auto", "triton", "eager"]))

    def _choose_step_kernel(self, asked: str) -> str:
        """"triton" (many steps per launch, :mod:`shld.dynamics.triton_steps`) or "eager" (a step at a
        time). "auto" takes Triton on a CUDA device when every condition below holds; "triton" insists and
        names the condition that fails (on a CPU device it runs Triton's interpreter: slow, for tests).
        A schedule D(t) and ``stop_when_all_hit`` run on the kernel too (the temperatures of a launch's
        steps go with it; a launch in which the last walker hits is replayed up to that step)."""
        if asked == "eager":
            return "eager"
        bk = self.backend
        reasons = []
        if bk.name != "torch":
            reasons.append(f"backend={bk.name!r} (needs 'torch')")
        if type(self.integrator) is not EulerMaruyama or self.integrator.preconditioner is not None:
            reasons.append("the integrator is not Euler–Maruyama without a preconditioner")
        if self.controller is not None:
            reasons.append("a `controller` changes D per walker")
        if self.target is not None and not callable(getattr(self.target, "halfspace", None)):
            reasons.append("a `target` callable is checked after every step (a shld.dynamics.HalfSpace target "
                           "is recorded inside the kernel)")
        if self.landscape.gradient_polynomial() is None:
            reasons.append(f"landscape {type(self.landscape).__name__} gives no gradient_polynomial()")
        if asked == "auto" and (reasons or bk.device.type != "cuda"):
            return "eager"                       # without importing Triton (a numpy run never needs it)
        from shld.dynamics.triton_steps import triton_available

        if not triton_available():
            reasons.append("Triton is not installed (pip install triton)")
        elif asked == "triton" and bk.name == "torch" and bk.device.type != "cuda":
            from shld.dynamics.triton_steps import interpreter_problem

            problem = interpreter_problem()      # a CPU device runs the kernel in Triton's interpreter
            if problem is not None:
                reasons.append(problem)
        if asked == "auto":
            return "eager" if reasons else "triton"
        if reasons:
            raise ValueError("`step_kernel`='triton' cannot run this Simulation: " + "; ".join(reasons)
                             + ". Use step_kernel='auto' or 'eager'")
        return "triton"

    def _step_kernel(self):
        """The many-steps kernel for this run's constant D (built on first use, kept)."""
        kern = self.__dict__.get("_triton_kernel")
        if kern is None:
            from shld.dynamics.triton_steps import CubicEulerKernel, check_against_reference

            D = float(self.schedule.D) if type(self.schedule) is Constant else None    # None: D(t) per launch
            kern = CubicEulerKernel(self.landscape.gradient_polynomial(), self.dt, D, self.backend,
                                    target=self.target)
            check_against_reference(kern)        # once per device and dtype: never trusted unchecked
            self._triton_kernel = kern
        return kern

    def __getstate__(self):               # kernels may be closures on a device: rebuilt after unpickling
        state = self.__dict__.copy()
        state.pop("kernels", None)
        state.pop("_triton_kernel", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.kernels = self.landscape.kernels(self.backend)

    # -- setup ------------------------------------------------------------------------
    def init_state(self, theta0, n_walkers: int | None = None, rng=None, seed=None) -> EnsembleState:
        d = self.landscape.dim
        bk = self.backend
        theta = check_finite_array("theta0", _host(theta0), dtype=self.dtype)
        gen = bk.generator(rng, seed)
        if theta.ndim == 1:
            if theta.shape[0] != d:
                raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {theta.shape}")
            n = 1 if n_walkers is None else check_int("n_walkers", n_walkers, minimum=1)
            self._check_memory(f"`n_walkers`={n}", n, d)
            theta = np.broadcast_to(theta, (n, d)) if bk.name == "numpy" else bk.asarray(theta).expand(n, d)
        elif theta.ndim == 2 and theta.shape[1] == d:
            if theta.shape[0] == 0:
                raise ValueError(f"`theta0` must hold at least one walker (shape (N, d) with N >= 1), "
                                 f"got shape {theta.shape}")
            if n_walkers is not None and n_walkers != theta.shape[0]:
                raise ValueError(f"`n_walkers`={n_walkers} does not match theta0 with {theta.shape[0]} rows")
            self._check_memory(f"`theta0` of shape {theta.shape}", theta.shape[0], d)
        else:
            raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {theta.shape}")
        theta = bk.asarray(theta)          # a C-ordered copy: never move the caller's array
        n = theta.shape[0]
        state = EnsembleState(theta=theta, step=0, rng=gen,
                              hit=bk.full(n, False, "bool"), first_passage_time=bk.full(n, np.inf, "float64"),
                              status=bk.full(n, 0, "int8"), failure_step=bk.full(n, -1, "int64"))
        if isinstance(self.integrator, BAOAB):
            # momenta start in equilibrium at the initial temperature
            D0 = float(self.schedule(0.0))
            if not 0.0 <= D0 < _INF:
                _bad_D(D0, 0, 0.0)
            scale = np.sqrt(D0) if bk.name == "numpy" else math.sqrt(D0)
            state.momentum = scale * bk.randn(theta.shape, gen)
        if self.controller is not None:
            state.controller = self.controller.init_state(n, self.walker_backend)
        if self.target is not None:
            inside = self._target(theta)
            state.hit |= inside
            state.first_passage_time[inside] = 0.0
        return state

    def bytes_per_walker(self) -> float:
        """Bytes one walker needs while the run goes: the arrays of shape (N, d) the engine holds at once
        (θ, noise, gradient and one temporary of the step or of a record; BAOAB adds the momentum and its
        temporary, a preconditioner two temporaries) plus about 64 bytes of per-walker vectors (status,
        first passage, C, loss), 48 more with a controller (its multiplier, three int64 counters and the
        C it reads). ``store_trajectory`` comes on top."""
        return self._array_count() * self.landscape.dim * self.dtype.itemsize + self._vector_bytes()

    def _array_count(self) -> int:
        return 4 + (2 if isinstance(self.integrator, BAOAB) or self.integrator.preconditioner is not None else 0)

    def _vector_bytes(self) -> float:
        return 64.0 + (48.0 if self.controller is not None else 0.0)

    def _check_memory(self, what: str, n: int, d: int) -> None:
        """Refuse before allocating an ensemble whose working arrays do not fit in the backend's memory
        (host memory, or the GPU's free memory); see :meth:`bytes_per_walker`."""
        arrays = self._array_count()
        where = "" if self.backend.name == "numpy" else f" on {self.backend.device}"
        check_memory(f"{what} (d={d}, {self.dtype.name}{where}; {arrays} working arrays of shape (N, d) "
                     "plus per-walker vectors)", float(n) * self.bytes_per_walker(),
                     available=self.backend.available_memory())

    def record_interval(self, n_steps: int) -> int:
        """Steps between records when :meth:`advance` moves ``n_steps`` steps: ``record_every`` when
        given, else max(``MIN_RECORD_EVERY``, ⌈n_steps / ``DEFAULT_RECORDS``⌉). Records fall on the
        steps that are multiples of it, and on the last step. The default depends on the length of
        each call: a run advanced in pieces records on one grid only when ``record_every`` is set."""
        if self.record_every is not None:
            return self.record_every
        return max(MIN_RECORD_EVERY, -(-n_steps // DEFAULT_RECORDS))

    def _target(self, theta):
        bk = self.backend
        mask = self.target(theta)
        if not bk.is_array(mask):
            mask = np.asarray(mask)
            if mask.dtype == bool and bk.name != "numpy":
                mask = bk.asarray(mask, "bool")
        if tuple(mask.shape) != (theta.shape[0],) or str(mask.dtype) not in ("bool", "torch.bool"):
            raise ValueError(f"`target` must return a boolean array of shape ({theta.shape[0]},), "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        return mask

    def _adopt(self, state: EnsembleState) -> None:
        """Refuse a state made by another backend (its generator cannot continue this run's stream)."""
        bk = self.backend
        if state.backend != bk.name or not bk.is_array(state.theta):
            raise ValueError(f"`state` was made by backend={state.backend!r}; this Simulation runs on "
                             f"backend={bk.name!r} (resume a run on the backend that made it)")
        if bk.name == "torch" and state.theta.device != bk.device:
            raise ValueError(f"`state` lives on {state.theta.device}; this Simulation runs on {bk.device} "
                             "(load it with EnsembleState.from_arrays(..., device=...))")
        wb = self.walker_backend
        if self.controller is not None and any(not wb.is_array(v) for v in state.controller.values()):
            # a loaded state's controller arrays are numpy: a GPU run keeps them on its device
            state.controller = {k: v if wb.is_array(v) else wb.asarray(_host(v), _host(v).dtype.name)
                                for k, v in state.controller.items()}

    # -- the loop ---------------------------------------------------------------------
    def advance(self, state: EnsembleState, n_steps: int, *, on_record: Callable | None = None,
                progress: bool = False, _result: SimulationResult | None = None) -> SimulationResult:
        """Advance ``state`` (in place) by ``n_steps``; record every ``record_every`` steps and at the
        last step. ``on_record(row)`` receives each record row (dict of scalars) as it is made."""
        n_steps = check_int("n_steps", n_steps, minimum=0)
        self._adopt(state)
        bk, kern = self.backend, self.kernels
        dt, integ, rng = self.dt, self.integrator, state.rng
        theta = state.theta
        n, d = theta.shape
        k = self.record_interval(n_steps)
        baoab = isinstance(integ, BAOAB)
        ctrl = self.controller
        recorder = _Recorder(self, n, d)
        noise = bk.empty_like(theta)
        grad = bk.empty_like(theta)
        interventions: list[tuple[int, np.ndarray]] = []
        alive = state.status == STATUS_OK
        all_alive = bk.all(alive)
        t_wall = _time.perf_counter()
        end = state.step + n_steps
        bar = _progress_bar(progress, n_steps)
        stopped_early = False
        # the fused path (torch): θ ← θ − dt·∇L(θ) by the landscape's descend_ kernel and scaled normals
        # drawn in one pass; the gradient is then made only when a record needs it
        fused = (bk.name != "numpy" and kern.descend_ is not None and not baoab and ctrl is None
                 and integ.preconditioner is None)
        descend_ = kern.descend_

        grad_fn = _grad_fn(kern.grad_into, grad)
        # a constant D is read once per call instead of through the schedule at every step
        D_const = float(self.schedule.D) if type(self.schedule) is Constant else None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            kern.grad_into(theta, grad)
            grad_fresh = True
            recheck_stop = True
            # fused, no target, constant D: runs of steps with no record, check or progress update between
            # them go through a tight loop (the same operations, without the per-step bookkeeping)
            # numpy's Euler–Maruyama step (draw, two axpys, gradient) has such a loop too, with its bits
            plain_euler = (bk.name == "numpy" and type(integ) is EulerMaruyama and integ.preconditioner is None
                           and ctrl is None)
            tight = (fused or plain_euler) and self.target is None and D_const is not None
            if tight:
                sigma_c = math.sqrt(2.0 * D_const * dt)
                ce = self.check_every
                if fused:
                    draw = noise.normal_                         # = bk.normal_(noise, rng, σ), one frame less
                else:
                    draw, gi = rng.standard_normal, kern.grad_into     # = bk.randn_(noise, rng)
                    update = bk.axpy2_plan(theta, grad, noise) if sigma_c != 0.0 else None
            multistep = self._step_kernel() if self.step_kernel == "triton" else None
            if multistep is not None and state.philox_key is None:
                state.philox_key = multistep.new_key(rng)
            while state.step < end:
                s = state.step
                if multistep is not None:
                    # record (on the grid), then every step up to the next record, check or end in one launch
                    stop = min((s // k + 1) * k, (s // self.check_every + 1) * self.check_every, end)
                    if bar is not None:
                        stop = min(stop, (s // 500 + 1) * 500)
                    D_run = None if D_const is not None else self._schedule_steps(s, stop)
                    if D_run is not None:
                        stop = s + len(D_run)            # up to the step whose D(t) is not allowed
                    if s % k == 0:
                        D_s = D_const if D_run is None else float(D_run[0])
                        if not grad_fresh:
                            kern.grad_into(theta, grad)
                        g2, Cw = recorder.walker_C(grad, D_s)
                        recorder.record(s, s * dt, theta, g2, Cw, D_s, alive, all_alive, state, on_record)
                        if recorder.flagged:
                            alive, all_alive = self._fail_flagged(state, recorder, interventions)
                    stop, stopped_early = self._launch(multistep, state, s, stop, D_run, alive, all_alive, noise)
                    grad_fresh = False
                    state.step = stop
                    if stop % self.check_every == 0 or stop == end or stopped_early:
                        all_alive = self._check_finite(state, alive, all_alive, recorder, interventions)
                        alive = state.status == STATUS_OK
                    if bar is not None and (stop % 500 == 0 or stop == end or stopped_early):
                        bar.update(stop - (end - n_steps) - bar.n)
                    if stopped_early:
                        break
                    continue
                if tight and s % k:
                    m = min(-(-s // k) * k - s, (s // ce + 1) * ce - 1 - s, end - 1 - s)
                    if bar is not None:
                        m = min(m, (s // 500 + 1) * 500 - 1 - s)
                    if m > 0:
                        if fused:
                            for _ in range(m):
                                draw(0.0, sigma_c, generator=rng)
                                descend_(theta, dt, noise)
                            grad_fresh = False
                        elif update is not None:
                            for _ in range(m):
                                draw(out=noise, dtype=bk.dtype)
                                update(-dt, sigma_c)
                                gi(theta, grad)
                        else:
                            for _ in range(m):
                                draw(out=noise, dtype=bk.dtype)
                                bk.axpy_(theta, grad, -dt)
                                gi(theta, grad)
                        state.step = s + m
                        continue
                t = s * dt
                D_t = D_const if D_const is not None else float(self.schedule(t))
                if not 0.0 <= D_t < _INF:
                    _bad_D(D_t, s, t)
                at_record = s % k == 0
                if fused:
                    if at_record:
                        if not grad_fresh:
                            kern.grad_into(theta, grad)
                        g2, Cw = recorder.walker_C(grad, D_t)
                        recorder.record(s, t, theta, g2, Cw, D_t, alive, all_alive, state, on_record)
                        if recorder.flagged:
                            alive, all_alive = self._fail_flagged(state, recorder, interventions)
                            recheck_stop = True
                    bk.normal_(noise, rng, math.sqrt(2.0 * D_t * dt))
                    descend_(theta, dt, noise)
                    grad_fresh = False
                else:
                    D = D_t if ctrl is None else D_t * self._multiplier(state)
                    if at_record or ctrl is not None:
                        g2, Cw = recorder.walker_C(grad, D)
                    if at_record:
                        recorder.record(s, t, theta, g2, Cw, D, alive, all_alive, state, on_record)
                        if recorder.flagged:
                            alive, all_alive = self._fail_flagged(state, recorder, interventions)
                            recheck_stop = True
                    if ctrl is not None:
                        wb = self.walker_backend
                        fired = ctrl.update(state.controller, s,
                                            wb.where(bk.to_numpy(alive) if self.walkers_c_on_host else alive,
                                                     Cw, _INF), backend=wb)
                        if fired.size:
                            interventions.append((s, fired))
                        D = D_t * self._multiplier(state)
                    bk.randn_(noise, rng)
                    if baoab:
                        grad = integ.step(theta, grad, noise, D, dt, {"momentum": state.momentum}, grad_fn,
                                          bk)
                    else:
                        integ.step(theta, grad, noise, D, dt, None, bk)
                state.step = s + 1
                if self.target is not None:
                    newly = self._target(theta) & ~state.hit
                    if bk.any(newly):
                        state.hit |= newly
                        state.first_passage_time[newly] = state.step * dt
                        recheck_stop = True
                    # whether every live walker has hit changes only with a new hit or a new failure
                    if self.stop_when_all_hit and recheck_stop:
                        recheck_stop = False
                        if bk.all(state.hit) if all_alive else bk.all(state.hit[alive]):
                            stopped_early = True
                if state.step % self.check_every == 0 or state.step == end or stopped_early:
                    all_alive = self._check_finite(state, alive, all_alive, recorder, interventions)
                    alive = state.status == STATUS_OK
                    recheck_stop = True
                if not baoab and not fused:
                    kern.grad_into(theta, grad)
                if bar is not None and (state.step % 500 == 0 or state.step == end):
                    bar.update(state.step - (end - n_steps) - bar.n)
                if stopped_early:
                    break
            s = state.step
            D_t = float(self.schedule(s * dt))
            if not 0.0 <= D_t < _INF:
                _bad_D(D_t, s, s * dt)
            D = D_t if ctrl is None else D_t * self._multiplier(state)
            if not recorder.steps or recorder.steps[-1] != s:
                if not grad_fresh:
                    kern.grad_into(theta, grad)
                g2, Cw = recorder.walker_C(grad, D)
                recorder.record(s, s * dt, theta, g2, Cw, D, alive, all_alive, state, on_record)
                if recorder.flagged:
                    self._fail_flagged(state, recorder, interventions)
        if bar is not None:
            bar.close()
        bk.synchronize()
        res = recorder.result(state, interventions, _time.perf_counter() - t_wall)
        if stopped_early:
            res.messages.append(f"stopped at step {state.step}: every live walker reached the target")
        return res

    def _launch(self, kernel, state, s: int, stop: int, D_run, alive, all_alive, scratch) -> tuple[int, bool]:
        """One launch of the many-steps ``kernel`` over the steps s ≤ i < stop (``D_run``: their D, or None
        for a constant D); returns (the step reached, whether the run stops there). With
        ``stop_when_all_hit``, once every walker alive at s has hit, the launch is replayed from its start
        (θ kept in ``scratch``) up to the last first passage: the noise depends on (key, coordinate, step)
        alone, so the replay is the same path, stopped where the eager loop stops."""
        run = (state.theta, state.philox_key)
        passage = (state.hit, state.first_passage_time)
        if not self.stop_when_all_hit:
            kernel(*run, s, stop, *passage, D=D_run)
            return stop, False
        saved = (scratch.copy_(state.theta), *(self.backend.copy(x) for x in passage))
        kernel(*run, s, stop, *passage, D=D_run)
        last = self._all_hit_step(state, alive, all_alive, s, stop)
        if last is None:
            return stop, False
        if last < stop:
            for now, before in zip((state.theta, *passage), saved):
                now.copy_(before)
            kernel(*run, s, last, *passage, D=None if D_run is None else D_run[:last - s])
        return last, True

    def _schedule_steps(self, s: int, stop: int) -> np.ndarray:
        """D(t) at the steps s ≤ i < stop (float64; as the eager loop evaluates it, one t = i·dt at a
        time), cut before the first step whose D(t) is not finite and ≥ 0 or raises: the steps before it
        are taken, as in the eager loop, and the error comes when the run reaches it (here, at step s)."""
        D = []
        for i in range(s, stop):
            try:
                D_i = float(self.schedule(i * self.dt))
            except Exception:
                if i == s:
                    raise
                break
            if not 0.0 <= D_i < _INF:
                if i == s:
                    _bad_D(D_i, s, s * self.dt)
                break
            D.append(D_i)
        return np.array(D)

    def _all_hit_step(self, state, alive, all_alive, s: int, stop: int) -> int | None:
        """After a launch over s ≤ i < stop: the step at which every walker alive at its start had hit
        the target (the step ``stop_when_all_hit`` stops at: the last of their first passages, and at
        least s + 1, as the eager loop steps once before it looks), or None while some have not."""
        bk = self.backend
        if not (bk.all(state.hit) if all_alive else bk.all(state.hit[alive])):
            return None
        fpt = state.first_passage_time if all_alive else state.first_passage_time[alive]
        latest = bk.max(fpt) if fpt.shape[0] else 0.0
        return min(max(round(latest / self.dt), s + 1), stop)

    def _multiplier(self, state):
        """The controller's per-walker multiplier of D as a column (N, 1) on the run's backend (a view
        of its state on numpy and on a GPU, where it never crosses to the host; a CPU tensor run
        copies it from the host numpy state)."""
        m = state.controller["multiplier"][:, None]
        return self.backend.asarray(m) if self.walkers_c_on_host else m

    def _check_finite(self, state, alive, all_alive, recorder, interventions) -> bool:
        bk = self.backend
        finite = bk.finite_rows(state.theta)
        newly_bad = alive & ~finite
        if not bk.any(newly_bad):
            return all_alive
        idx = bk.flatnonzero(newly_bad)
        window = f"between steps {max(0, state.step - self.check_every)} and {state.step}"
        self._fail(state, idx, f"{idx.size} walker(s) went non-finite {window} (t ≤ {state.step * self.dt:g}); "
                   f"first indices {idx[:10].tolist()}. Reduce dt or D, or check the gradient.",
                   recorder, interventions)
        return False

    def _fail_flagged(self, state, recorder, interventions):
        """Mark the walkers whose loss or gradient was non-finite at the record just made (at its
        step) as failed, like a walker whose θ went non-finite; return the new (alive, all_alive)."""
        bk = self.backend
        flagged = np.unique(np.concatenate(recorder.flagged))
        recorder.flagged.clear()
        idx = flagged[bk.to_numpy(state.status)[flagged] == STATUS_OK]
        if idx.size:
            self._fail(state, idx, f"{idx.size} walker(s) have a non-finite θ, loss or gradient at step "
                       f"{state.step} (t = {state.step * self.dt:g}); first indices {idx[:10].tolist()}. "
                       "Check the landscape's value/grad there, or reduce dt or D.", recorder, interventions)
        alive = state.status == STATUS_OK
        return alive, bk.all(alive)

    def _fail(self, state, idx, msg, recorder, interventions):
        where = self.backend.index(idx)
        state.status[where] = STATUS_NONFINITE
        state.failure_step[where] = state.step
        recorder.messages.append(msg)
        if self.on_nonfinite == "raise":
            raise NonFiniteError(msg, recorder.result(state, interventions, float("nan")))


def _host(x):
    """A numpy view of x (torch tensors, on any device, come to the host)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "detach"):
        return x
    return x.detach().cpu().numpy()


def _bad_D(value, step, t):
    raise ValueError(f"`D` (the schedule D(t)) returned {value!r} at step {step} (t = {t:g}); "
                     "D(t) must be finite and >= 0")


def _grad_fn(grad_into, buf):
    return lambda th: grad_into(th, buf)


class _Recorder:
    def __init__(self, sim: Simulation, n: int, d: int):
        self.sim = sim
        self.bk = sim.backend
        self.n, self.d = n, d
        self.steps: list[int] = []
        self.times: list[float] = []
        self.rows: dict[str, list] = {}
        self.traj: list[np.ndarray] = []
        self.D_hist: list[float] = []
        self.messages: list[str] = []
        self.flagged: list[np.ndarray] = []   # walkers whose loss or gradient was non-finite at a record
        self._g2 = self._C = self._scratch = None

    def walker_C(self, grad, D):
        """‖∇L‖² and C per walker (every walker), made once per record or controller step into reused
        buffers (overwritten by the next call). C comes from the one definition,
        :func:`shld.observables.consolidation_ratio_from_norm2`, with D clamped at 1e-300 so that D = 0
        gives a huge C instead of 0/0 (torch: the dtype's smallest normal). On a non-numpy backend
        everything stays on the device, and the per-walker C is made only when the controller or
        ``record_walkers`` needs it; otherwise the record's median C is the median ‖∇L‖² through the
        same formula."""
        bk = self.bk
        if self._g2 is None:
            self._g2 = bk.empty_like(grad[:, 0])
        bk.rowsum_sq(grad, self._g2)
        if bk.name != "numpy" and self.sim.controller is None and not self.sim.record_walkers:
            return self._g2, None
        if bk.name != "numpy" and not self.sim.walkers_c_on_host:      # a GPU run: C stays on the device
            tiny = float(np.finfo(bk.dtype_name).tiny)
            Dw = max(float(D), tiny) if np.ndim(D) == 0 else D[:, 0].clamp_min(tiny)
            return self._g2, consolidation_ratio_from_norm2(self._g2, Dw, self.d)
        if self._C is None:
            self._C = np.empty(grad.shape[0])
        g2 = bk.to_numpy(self._g2)
        Dw = D if np.ndim(D) == 0 else bk.to_numpy(D[:, 0])
        consolidation_ratio_from_norm2(g2, np.maximum(Dw, 1e-300), self.d, out=self._C)
        return self._g2, self._C

    def _scratch_like(self, x):
        """A reused work array of x's shape and dtype (statistics without a fresh temporary)."""
        s = self._scratch
        if s is None or s.shape != x.shape or s.dtype != x.dtype:
            s = self._scratch = self.bk.empty_like(x)
        return s

    def _put(self, key, val):
        self.rows.setdefault(key, []).append(val)

    def record(self, step, t, theta, g2, Cw, D, alive, all_alive, state, on_record):
        """One record row from θ and the per-walker ‖∇L‖² and C that :meth:`walker_C` made at this step.

        The finite check rides on the sums the statistics need anyway: a finite sum of the ‖∇L‖²
        (all ≥ 0) and of the losses means every term is finite; the per-walker mask is built only
        when a sum is not finite."""
        sim, bk = self.sim, self.bk
        sel = slice(None) if all_alive else alive
        th, g2 = theta[sel], g2[sel]
        host_C = sim.walkers_c_on_host                 # C on the host while the walkers are torch tensors
        if Cw is None:
            C = None
        else:
            C = Cw[bk.to_numpy(alive) if host_C and not all_alive else sel]
        obs = sim.observables
        lv = sim.kernels.value(th) if "loss" in obs and th.shape[0] else None
        sum_g2 = bk.sum(g2)
        sum_lv = None if lv is None else bk.sum(lv)
        if not (np.isfinite(sum_g2) and (lv is None or np.isfinite(sum_lv))):
            ok = bk.isfinite(g2) if lv is None else bk.isfinite(g2) & bk.isfinite(lv)
            if not bk.all(ok):
                # these walkers fail at this step (Simulation._fail_flagged); the record leaves them out
                ok_host = bk.to_numpy(ok)
                idx = bk.flatnonzero(alive)[~ok_host]
                self.flagged.append(idx)
                alive = bk.copy(alive)
                alive[bk.index(idx)] = False
                sel = alive
                th, g2 = th[ok], g2[ok]
                C = None if C is None else C[ok_host if host_C else ok]
                lv = None if lv is None else lv[ok]
                sum_g2 = bk.sum(g2)
                sum_lv = None if lv is None else bk.sum(lv)
        scalar_D = np.ndim(D) == 0
        D_mean = float(D) if scalar_D else float(np.mean(bk.to_numpy(D)))
        self.steps.append(step)
        self.times.append(t)
        self.D_hist.append(D_mean)
        row = {"step": step, "t": t}
        if th.shape[0]:
            if "loss" in obs:
                row["loss_mean"], row["loss_std"] = bk.mean_std(lv, sum_lv, self._scratch_like(lv))
                if sim.record_walkers:
                    self._put("loss_walkers", _pad(bk.to_numpy(lv), bk.to_numpy(alive), self.n))
            mean_g2 = sum_g2 / g2.shape[0]                     # = np.mean(g2), bit for bit
            if "grad_norm2" in obs:
                row["grad_norm2_mean"] = float(mean_g2)
            if "C" in obs:
                if scalar_D:
                    D_ens = D_mean
                else:
                    D_ens = np.mean(bk.to_numpy(D)[sel if isinstance(sel, slice) else bk.to_numpy(sel), 0])
                row["C_ensemble"] = float(consolidation_ratio_from_norm2(mean_g2, D_ens, self.d))
                if C is not None:
                    row["C_median"] = sim.walker_backend.median(C, np.empty_like(C) if host_C
                                                                else self._scratch_like(C))
                else:   # scalar D: the median of C is C of the median ‖∇L‖² (C is increasing in it)
                    row["C_median"] = float(consolidation_ratio_from_norm2(
                        bk.median(g2, None), max(D_mean, 1e-300), self.d))
                if sim.record_walkers:
                    self._put("C_walkers", _pad(_host(C), bk.to_numpy(alive), self.n))
            if "mean" in obs:
                self._put("mean", bk.mean0(th))
            if "var" in obs:
                self._put("var", bk.var0(th))
        row["D"] = D_mean
        row["n_alive"] = bk.count(alive)
        if sim.target is not None:
            row["fraction_hit"] = bk.fraction(state.hit)
        for key, val in row.items():
            if key not in ("step", "t"):
                self._put(key, val)
        if sim.track_walkers:
            head = bk.to_numpy(theta[:min(sim.track_walkers, self.n)])
            for i in range(head.shape[0]):
                for j in range(self.d):
                    row[f"w{i}_{j}"] = float(head[i, j])
        if sim.store_trajectory:
            self.traj.append(np.array(bk.to_numpy(theta), copy=True))
        if on_record is not None:
            on_record(row)

    def result(self, state, interventions, wall) -> SimulationResult:
        bk = self.bk
        records = {k: np.asarray(v) for k, v in self.rows.items()}
        host = bk.to_numpy_copy
        n = self.n
        if bk.name == "numpy":
            fpt, hit, status, failure = (host(state.first_passage_time), host(state.hit), host(state.status),
                                         host(state.failure_step))
        else:
            # from a device, copy only what carries information (a GPU's per-walker vectors are GBs at
            # 10⁸ walkers): no walker failed → status 0 and failure_step −1; none hit → fpt = inf
            failed = bk.any(state.status != STATUS_OK)
            status = host(state.status) if failed else np.zeros(n, np.int8)
            failure = host(state.failure_step) if failed else np.full(n, -1, np.int64)
            any_hit = bk.any(state.hit)
            hit = host(state.hit) if any_hit else np.zeros(n, bool)
            fpt = host(state.first_passage_time) if any_hit else np.full(n, np.inf)
        return SimulationResult(
            times=np.asarray(self.times), steps=np.asarray(self.steps, dtype=np.int64), records=records,
            final_theta=host(state.theta), first_passage_time=fpt,
            hit=hit, status=status, failure_step=failure,
            D_history=np.asarray(self.D_hist), interventions=interventions, state=state,
            dt=self.sim.dt, wall_time=wall,
            trajectory=np.stack(self.traj) if self.traj else None, messages=list(self.messages))


def _pad(values, alive, n):
    if values.shape[0] == n:
        return values.copy()
    out = np.full(n, np.nan)
    out[alive] = values
    return out


def _progress_bar(progress, total):
    # None when off: the step loop tests for it instead of calling a do-nothing bar every step
    if not progress:
        return None
    from shld.progress import progress_bar

    return progress_bar(total, "langevin", "step")


def simulate(landscape: Landscape, theta0, D=0.1, dt: float = 1e-3, n_steps: int = 1000, *,
             n_walkers: int | None = None, rng=None, seed=None, state=None,
             on_record: Callable | None = None, progress: bool = False, backend: str = "numpy",
             device=None, max_memory=None, chunks: int | None = None, executor=None,
             **options) -> SimulationResult:
    """Run Langevin dynamics for an ensemble and return a :class:`SimulationResult`.

    Parameters
    ----------
    landscape : Landscape
        The loss L(θ); wrap plain callables with :class:`shld.landscapes.FunctionLandscape`.
    theta0 : array (d,) or (N, d)
        Start; a single point is copied to ``n_walkers`` walkers.
    D : float or schedule
        Diffusion coefficient (temperature, loss units) or a schedule D(t) from
        :mod:`shld.dynamics.schedules`.
    dt : float
        Time step (t = step·dt; for SGD, dt = learning rate).
    n_steps : int
        Number of steps.
    rng, seed : Generator or int
        The run's single source of randomness (numpy: a ``numpy.random.Generator``, int or
        SeedSequence; torch: also a ``torch.Generator`` on the run's device).
    state : EnsembleState, or the list ``result.state`` of a chunked run
        Continue a previous run instead of starting from ``theta0``.
    backend, device : str
        ``"numpy"`` (default) or ``"torch"``; torch runs on ``device`` ("cpu", "cuda", "cuda:<i>").
        ``dtype`` (an option below) is float64 by default on both.
    max_memory : int, float or str
        A memory budget in bytes ("512MiB", "4GB" also accepted) for the walkers' working arrays
        (:meth:`Simulation.bytes_per_walker`): an ensemble that needs more runs in chunks of walkers.
    chunks : int
        Run the ensemble as (at least) this many chunks of walkers.
    executor : object with ``map(fn, items)``
        Run the chunks there (``shld.experiments.executor``'s executors, a Dask or Ray executor, or
        any object with ``map``); ``fn`` is module-level and the items are picklable when the landscape,
        schedule and ``target`` are. Without it, chunks run one after the other in this process.

        A chunked run is one ensemble: chunk i gets walkers [start_i, end_i) and its own generator
        seeded by the i-th child of ``SeedSequence(seed).spawn(n_chunks)`` (``rng`` a numpy Generator:
        of its seed sequence). Its statistics equal the one-process run's, its bits do not. The merged
        records: means, standard deviations, ``grad_norm2_mean``, ``C_ensemble`` (exact when D is common
        to all walkers), ``mean``/``var``, ``n_alive`` and ``fraction_hit`` are pooled exactly over the
        chunks; ``C_median`` is exact with ``record_walkers=True`` and otherwise the walker-weighted mean
        of the chunks' medians (a message says so). ``on_record`` sees the merged rows after the run.
        ``result.state`` is then the list of the chunks' states (arrays with an executor), which
        ``state=`` accepts to continue. A budget that holds the whole ensemble (one chunk, no executor)
        is the plain run, bit for bit; one chunk on an executor uses the run seed itself.
    **options
        ``integrator`` ("euler" | "baoab"), ``friction``, ``preconditioner``, ``divergence``,
        ``record_every`` (default: every max(20, ⌈n_steps/50⌉) steps and at the last step, see
        :meth:`Simulation.record_interval`), ``observables``, ``record_walkers``,
        ``store_trajectory``, ``target``, ``stop_when_all_hit``, ``controller``
        (:class:`AdaptiveNoise`), ``dtype``,
        ``on_nonfinite`` ("record" | "raise"), ``check_every``, ``track_walkers`` (positions of the
        first k walkers added to each record row as ``w{i}_{j}``), ``step_kernel`` ("auto" | "triton" |
        "eager"): with "auto" (default) a torch run on CUDA whose landscape gives
        ``gradient_polynomial()`` (the double well, diagonal quadratics), with Euler–Maruyama, a constant
        D, no controller or preconditioner, and no target or a :class:`shld.dynamics.HalfSpace` one
        (recorded in the kernel), runs all the steps between two records or checks in
        one Triton kernel (:mod:`shld.dynamics.triton_steps`; counter-based Philox noise, so its bits
        differ from the eager step's and do not depend on how the run is split); "triton" insists (and
        runs Triton's interpreter on a CPU device), "eager" never.
    """
    sim = Simulation(landscape, D, dt, backend=backend, device=device, **options)
    if isinstance(state, (list, tuple)) or chunks is not None or max_memory is not None or executor is not None:
        if executor is not None and not callable(getattr(executor, "map", None)):
            raise TypeError(f"`executor` must have a map(fn, items) method, got {type(executor).__name__}")
        return _simulate_chunked(sim, landscape, theta0, D, dt, n_steps, n_walkers=n_walkers, rng=rng,
                                 seed=seed, state=state, on_record=on_record, progress=progress,
                                 backend=backend, device=device, max_memory=max_memory, chunks=chunks,
                                 executor=executor, options=options)
    if state is None:
        state = sim.init_state(theta0, n_walkers=n_walkers, rng=rng, seed=seed)
    return sim.advance(state, n_steps, on_record=on_record, progress=progress)


# -- chunks of walkers -------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(name: str, value) -> float:
    """A byte count from a number or a string such as "512MiB", "4GB" or "1e9"; must be > 0."""
    if isinstance(value, str):
        import re

        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", value)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"`{name}` must be a number of bytes or a string like '512MiB' or '4GB' "
                             f"(units {sorted(k for k in _UNITS if k)}), got {value!r}")
        try:
            value = float(m.group(1)) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"`{name}` must be a number of bytes or a string like '512MiB', got {value!r}") \
                from None
    return check_positive(name, value)


def _root_seeds(rng, seed, n_chunks: int) -> list:
    """The chunks' seeds: children of the run's SeedSequence (the package's one spawn rule)."""
    src = rng if rng is not None else seed
    if isinstance(src, np.random.Generator):
        return src.bit_generator.seed_seq.spawn(n_chunks)
    if src is None or isinstance(src, (int, np.integer, np.random.SeedSequence)) and not isinstance(src, bool):
        ss = src if isinstance(src, np.random.SeedSequence) else np.random.SeedSequence(src)
        return ss.spawn(n_chunks)
    raise TypeError(f"`rng`/`seed` of a chunked run must be an int, a SeedSequence or a numpy Generator (its "
                    f"seed sequence is spawned per chunk), got {type(src).__name__}")


def _run_chunk(spec: dict):
    """One chunk of a chunked run (module-level, so that executors can ship it to a worker)."""
    sim = Simulation(spec["landscape"], spec["D"], spec["dt"], backend=spec["backend"], device=spec["device"],
                     **spec["options"])
    st = spec["state"]
    if st is None:
        st = sim.init_state(spec["theta0"], rng=spec["seed"])
    elif isinstance(st, dict):
        st = EnsembleState.from_arrays(st, device=spec["device"])
    res = sim.advance(st, spec["n_steps"], progress=spec["progress"])
    if spec["portable"]:
        res.state = res.state.to_arrays()
    return res


def _simulate_chunked(sim, landscape, theta0, D, dt, n_steps, *, n_walkers, rng, seed, state, on_record,
                      progress, backend, device, max_memory, chunks, executor, options):
    t0 = _time.perf_counter()
    d = landscape.dim
    budget = None if max_memory is None else parse_bytes("max_memory", max_memory)
    if chunks is not None:
        chunks = check_int("chunks", chunks, minimum=1)
    if isinstance(state, (list, tuple)):
        if not state:
            raise ValueError("`state` must be an EnsembleState or a non-empty list of chunk states, got []")
        specs_state = list(state)
        sizes = [int(np.shape(s["theta"] if isinstance(s, dict) else s.theta)[0]) for s in specs_state]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        parts = [None] * len(specs_state)
        seeds = [None] * len(specs_state)
    elif state is not None:
        raise ValueError("`state`: a single EnsembleState cannot be split into chunks; continue it without "
                         "`chunks`/`max_memory`/`executor`, or pass the list of chunk states")
    else:
        theta = check_finite_array("theta0", _host(theta0), dtype=sim.dtype)
        if theta.ndim == 1:
            if theta.shape[0] != d:
                raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {theta.shape}")
            n = 1 if n_walkers is None else check_int("n_walkers", n_walkers, minimum=1)
        elif theta.ndim == 2 and theta.shape[1] == d and theta.shape[0] >= 1:
            n = theta.shape[0]
            if n_walkers is not None and n_walkers != n:
                raise ValueError(f"`n_walkers`={n_walkers} does not match theta0 with {n} rows")
        else:
            raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d} and N >= 1, got {theta.shape}")
        per = sim.bytes_per_walker()
        n_chunks = chunks or 1
        if budget is not None:
            if per > budget:
                raise ValueError(f"`max_memory`={max_memory!r} is below one walker's {per:.0f} bytes "
                                 f"(d={d}, {sim.dtype.name})")
            n_chunks = max(n_chunks, -(-int(n * per) // int(budget)))
        n_chunks = min(n_chunks, n)
        if n_chunks == 1 and executor is None:
            # the budget holds the whole ensemble: the plain run, bit for bit (its state is no list)
            st = sim.init_state(theta0, n_walkers=n_walkers, rng=rng, seed=seed)
            return sim.advance(st, n_steps, on_record=on_record, progress=progress)
        starts = np.linspace(0, n, n_chunks + 1).round().astype(np.int64)
        parts = [theta if theta.ndim == 1 else theta[starts[i]:starts[i + 1]] for i in range(n_chunks)]
        parts = [np.broadcast_to(p, (starts[i + 1] - starts[i], d)) if p.ndim == 1 else p
                 for i, p in enumerate(parts)]
        seeds = _root_seeds(rng, seed, n_chunks) if n_chunks > 1 else [rng if rng is not None else seed]
        specs_state = [None] * n_chunks
    portable = executor is not None
    specs = [dict(landscape=landscape, D=D, dt=dt, backend=backend, device=device, options=options,
                  theta0=parts[i], seed=seeds[i], state=specs_state[i], n_steps=n_steps,
                  progress=bool(progress) and not portable, portable=portable)
             for i in range(len(specs_state))]
    results = list(executor.map(_run_chunk, specs)) if portable else [_run_chunk(sp) for sp in specs]
    if len(results) != len(specs) or not all(isinstance(r, SimulationResult) for r in results):
        got = [type(r).__name__ for r in results]
        raise RuntimeError(f"`executor`.map(fn, chunks) must yield one SimulationResult per chunk, in order "
                           f"({len(specs)} chunks); got {len(results)} results of types {got[:5]}")
    res = _merge(results, starts, sim)
    res.wall_time = _time.perf_counter() - t0
    if on_record is not None:
        keys = [k for k, v in res.records.items() if v.ndim == 1]
        for i, step in enumerate(res.steps):
            on_record({"step": int(step), "t": float(res.times[i]), **{k: res.records[k][i].item() for k in keys}})
    return res


def _merge(results: list, starts, sim) -> SimulationResult:
    """One result from the chunks' results (see :func:`simulate`, ``executor``)."""
    if len(results) == 1:
        res = results[0]
        res.state = [res.state]
        return res
    common = sorted(set.intersection(*(set(r.steps.tolist()) for r in results)))
    rows = [np.searchsorted(r.steps, common) for r in results]
    sizes = np.array([r.n_walkers for r in results], dtype=float)
    messages = []
    if any(len(r.steps) != len(common) for r in results):
        messages.append(f"chunks stopped at different steps; records kept at the {len(common)} steps "
                        "every chunk recorded")
    R = lambda r, i, k: r.records[k][rows[i]]  # noqa: E731
    recs = {}
    keys = results[0].records.keys()
    alive = np.stack([R(r, i, "n_alive") for i, r in enumerate(results)]).astype(float)   # (chunks, T)
    w_alive = alive / np.maximum(alive.sum(0), 1)
    pooled = lambda k: np.sum([w_alive[i] * np.nan_to_num(R(r, i, k)) for i, r in enumerate(results)], 0)  # noqa
    for k in keys:
        if k in ("loss_mean", "grad_norm2_mean", "C_ensemble"):
            recs[k] = pooled(k)
        elif k == "loss_std":
            second = np.sum([w_alive[i] * np.nan_to_num(R(r, i, "loss_std") ** 2 + R(r, i, "loss_mean") ** 2)
                             for i, r in enumerate(results)], 0)
            recs[k] = np.sqrt(np.maximum(second - pooled("loss_mean") ** 2, 0.0))
        elif k in ("mean", "var"):
            m = np.sum([w_alive[i][:, None] * R(r, i, "mean") for i, r in enumerate(results)], 0) \
                if "mean" in keys else None
            if k == "mean":
                recs[k] = m
            else:
                mm = m if m is not None else None
                if mm is None:   # var without mean: pool the within-chunk variances only
                    recs[k] = np.sum([w_alive[i][:, None] * R(r, i, "var") for i, r in enumerate(results)], 0)
                    messages.append("var pooled without the between-chunk term (record 'mean' too for exact)")
                else:
                    second = np.sum([w_alive[i][:, None] * (R(r, i, "var") + R(r, i, "mean") ** 2)
                                     for i, r in enumerate(results)], 0)
                    recs[k] = np.maximum(second - mm ** 2, 0.0)
        elif k == "n_alive":
            recs[k] = alive.sum(0).astype(np.int64)
        elif k in ("D", "fraction_hit"):
            recs[k] = np.sum([sizes[i] * R(r, i, k) for i, r in enumerate(results)], 0) / sizes.sum()
        elif k in ("loss_walkers", "C_walkers"):
            recs[k] = np.concatenate([R(r, i, k) for i, r in enumerate(results)], axis=1)
        elif k == "C_median":
            if "C_walkers" in keys:
                cw = np.concatenate([R(r, i, "C_walkers") for i, r in enumerate(results)], axis=1)
                recs[k] = np.nanmedian(cw, axis=1)
            else:
                recs[k] = pooled(k)
                messages.append("C_median of a chunked run is the walker-weighted mean of the chunks' "
                                "medians (record_walkers=True gives the exact median)")
    interventions = []
    for i, r in enumerate(results):
        interventions += [(s, idx + starts[i]) for s, idx in r.interventions]
    interventions.sort(key=lambda x: x[0])
    for i, r in enumerate(results):
        messages += [f"chunk {i} (walkers {starts[i]}–{starts[i + 1] - 1}): {m}" for m in r.messages]
    cat = lambda k: np.concatenate([getattr(r, k) for r in results])  # noqa: E731
    first = results[0]
    traj = None
    if all(r.trajectory is not None for r in results):
        traj = np.concatenate([r.trajectory[rows[i]] for i, r in enumerate(results)], axis=1)
    return SimulationResult(
        times=first.times[rows[0]], steps=first.steps[rows[0]], records=recs, final_theta=cat("final_theta"),
        first_passage_time=cat("first_passage_time"), hit=cat("hit"), status=cat("status"),
        failure_step=cat("failure_step"),
        D_history=np.sum([sizes[i] * r.D_history[rows[i]] for i, r in enumerate(results)], 0) / sizes.sum(),
        interventions=interventions, state=[r.state for r in results], dt=first.dt, wall_time=0.0,
        trajectory=traj, messages=messages)
