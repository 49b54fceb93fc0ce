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

Beside this module: the state and the result (:mod:`shld.dynamics.state`), the records
(:mod:`shld.dynamics.recording`), walkers in chunks (:mod:`shld.dynamics.chunks`), and the many-steps
GPU kernel (:mod:`shld.dynamics.triton_steps`).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable

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
from shld.dynamics.chunks import _simulate_chunked
from shld.dynamics.controllers import AdaptiveNoise
from shld.dynamics.integrators import BAOAB, EulerMaruyama, make_integrator
from shld.dynamics.recording import _Recorder
from shld.dynamics.schedules import Constant, as_schedule
from shld.dynamics.state import STATUS_NONFINITE, STATUS_OK, EnsembleState, NonFiniteError, SimulationResult, _host
from shld.landscapes.base import Landscape

OBSERVABLES = ("loss", "C", "grad_norm2", "mean", "var", "D")
#: Default record schedule (``record_every=None``): about ``DEFAULT_RECORDS`` records spread over each
#: :meth:`Simulation.advance` call (every ⌈n_steps/50⌉ steps), never more often than every
#: ``MIN_RECORD_EVERY`` steps, plus one at the last step. A record costs one to two steps' worth of
#: normals (the loss of every walker, the median of C), so recording stays within a few per cent of a
#: run of any length (docs/benchmarks.md); ask for more with ``record_every``.
DEFAULT_RECORDS = 50
MIN_RECORD_EVERY = 20
_INF = float("inf")


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
        p_const = getattr(self.integrator, "_const_p", None)
        if p_const is not None and p_const.shape not in ((), (landscape.dim,)):
            raise ValueError(f"`preconditioner` must be a scalar or of shape (d,) = ({landscape.dim},), got "
                             f"shape {p_const.shape}")
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
        """The many-steps kernel for this run's D (a number, or None for a schedule: each launch then
        carries its steps' D), built on first use and kept."""
        kern = self.__dict__.get("_triton_kernel")
        if kern is None:
            from shld.dynamics.triton_steps import CubicEulerKernel, check_against_reference

            D = float(self.schedule.D) if type(self.schedule) is Constant else None    # None: D(t) per launch
            kern = CubicEulerKernel(self.landscape.gradient_polynomial(), self.dt, D, self.backend,
                                    target=self.target)
            check_against_reference(kern)        # once per compiled variant: never trusted unchecked
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
        """Refuse a state this Simulation cannot continue exactly: another backend or device (its generator
        cannot continue this run's stream), another dtype, dimension, integrator or controller."""
        bk = self.backend
        if state.backend != bk.name or not bk.is_array(state.theta):
            raise ValueError(f"`state` was made by backend={state.backend!r}; this Simulation runs on "
                             f"backend={bk.name!r} (resume a run on the backend that made it)")
        if bk.name == "torch" and state.theta.device != bk.device:
            raise ValueError(f"`state` lives on {state.theta.device}; this Simulation runs on {bk.device} "
                             "(load it with EnsembleState.from_arrays(..., device=...))")
        theta = state.theta
        dtype = str(theta.dtype).replace("torch.", "")
        if dtype != bk.dtype_name:
            raise ValueError(f"`state` holds {dtype} walkers; this Simulation runs in dtype={bk.dtype_name!r} "
                             "(resume a run with the dtype that made it)")
        if theta.ndim != 2 or theta.shape[1] != self.landscape.dim:
            raise ValueError(f"`state` holds walkers of shape {tuple(theta.shape)}; this Simulation's "
                             f"landscape has d={self.landscape.dim} (need shape (N, {self.landscape.dim}))")
        baoab = isinstance(self.integrator, BAOAB)
        if baoab != (state.momentum is not None):
            made = "an underdamped (BAOAB) run: it has momenta" if state.momentum is not None else \
                "an overdamped run: it has no momenta"
            raise ValueError(f"`state` was made by {made}; this Simulation integrates with "
                             f"{type(self.integrator).__name__} (resume with the integrator that made it)")
        want = set() if self.controller is None else set(self.controller.init_state(1).keys())
        if set(state.controller) != want:
            raise ValueError(f"`state` carries controller state {sorted(state.controller) or 'none'}; this "
                             f"Simulation's controller {type(self.controller).__name__ if want else 'None'} "
                             f"needs {sorted(want) or 'none'} (resume with the controller that made it)")
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


def _bad_D(value, step, t):
    raise ValueError(f"`D` (the schedule D(t)) returned {value!r} at step {step} (t = {t:g}); "
                     "D(t) must be finite and >= 0")


def _grad_fn(grad_into, buf):
    return lambda th: grad_into(th, buf)


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
        D or a schedule, no controller or preconditioner, and no target or a :class:`shld.dynamics.HalfSpace`
        one (recorded in the kernel; ``stop_when_all_hit`` too), runs all the steps between two records or
        checks in
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
