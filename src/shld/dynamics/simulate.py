"""The ensemble driver: N walkers × d dimensions advanced together, one Python loop over time.

    result = simulate(landscape, theta0, D=0.1, dt=1e-3, n_steps=10_000, seed=0)

Dynamics (overdamped, default): dθ = −∇L(θ) dt + √(2D) dW, discretised by Euler–Maruyama with
time step ``dt`` (t = step·dt; an SGD step of learning rate η is dt = η). D is a temperature in loss
units: the stationary law is ρ*(θ) ∝ exp(−L(θ)/D). ``integrator="baoab"`` switches to underdamped
Langevin with friction γ (see :mod:`shld.dynamics.integrators`).

What is kept: ensemble statistics every ``record_every`` steps (by default about 50 records spread over
the run, at most one every 20 steps, and one at the last step; never the full trajectory unless
``store_trajectory=True``), per-walker first-passage times into ``target`` (``inf`` = censored),
per-walker status (0 = ok, 1 = went non-finite) with the step where the failure was detected: θ is
checked every ``check_every`` steps, the loss and gradient of the live walkers at every record.
Randomness: one ``numpy.random.Generator`` per run; the same seed gives the same bits.
Resuming: ``SimulationResult.state`` can be saved (``state.to_arrays()``) and passed back as
``state=`` to continue exactly where the run stopped.
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shld._validation import (
    as_generator,
    check_choice,
    check_finite_array,
    check_int,
    check_memory,
    check_names,
    check_positive,
)
from shld.dynamics.controllers import AdaptiveNoise
from shld.dynamics.integrators import BAOAB, make_integrator
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
    """Everything needed to continue a run bit for bit."""

    theta: np.ndarray
    step: int
    rng: np.random.Generator
    momentum: np.ndarray | None = None
    hit: np.ndarray | None = None
    first_passage_time: np.ndarray | None = None
    status: np.ndarray | None = None
    failure_step: np.ndarray | None = None
    controller: dict = field(default_factory=dict)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (the RNG state travels as a JSON string)."""
        out = {"theta": self.theta, "step": np.array(self.step),
               "rng_state": np.array(json.dumps(self.rng.bit_generator.state)),
               "rng_kind": np.array(type(self.rng.bit_generator).__name__)}
        for name in ("momentum", "hit", "first_passage_time", "status", "failure_step"):
            val = getattr(self, name)
            if val is not None:
                out[name] = val
        for k, v in self.controller.items():
            out["controller__" + k] = v
        return out

    @classmethod
    def from_arrays(cls, arrays: dict) -> EnsembleState:
        bitgen = getattr(np.random, str(arrays["rng_kind"]))()
        bitgen.state = json.loads(str(arrays["rng_state"]))
        ctrl = {k.split("__", 1)[1]: np.array(v) for k, v in arrays.items() if k.startswith("controller__")}
        get = lambda k: np.array(arrays[k]) if k in arrays else None  # noqa: E731
        return cls(theta=np.array(arrays["theta"]), step=int(arrays["step"]),
                   rng=np.random.Generator(bitgen), momentum=get("momentum"), hit=get("hit"),
                   first_passage_time=get("first_passage_time"), status=get("status"),
                   failure_step=get("failure_step"), controller=ctrl)


@dataclass
class SimulationResult:
    """Output of :func:`simulate`. ``records[name]`` has one row per record time ``times``."""

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
    state: EnsembleState
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
    """A configured Langevin run over an ensemble; :meth:`advance` moves a state forward."""

    def __init__(self, landscape: Landscape, D=0.1, dt: float = 1e-3, *, integrator: str = "euler",
                 friction: float = 1.0, preconditioner=None, divergence=None,
                 record_every: int | None = None, observables=("loss", "C"),
                 record_walkers: bool = False, store_trajectory: bool = False,
                 target: Callable | None = None, stop_when_all_hit: bool = False,
                 controller: AdaptiveNoise | None = None, dtype=np.float64,
                 on_nonfinite: str = "record", check_every: int = 100, track_walkers: int = 0):
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
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"`dtype` must be float32 or float64, got {dtype!r}")
        self.on_nonfinite = check_choice("on_nonfinite", on_nonfinite, ["record", "raise"])
        self.check_every = check_int("check_every", check_every, minimum=1)
        self.track_walkers = check_int("track_walkers", track_walkers, minimum=0)

    # -- setup ------------------------------------------------------------------------
    def init_state(self, theta0, n_walkers: int | None = None, rng=None, seed=None) -> EnsembleState:
        d = self.landscape.dim
        theta = check_finite_array("theta0", theta0, dtype=self.dtype)
        gen = as_generator(rng, seed)
        if theta.ndim == 1:
            if theta.shape[0] != d:
                raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {theta.shape}")
            n = 1 if n_walkers is None else check_int("n_walkers", n_walkers, minimum=1)
            self._check_memory(f"`n_walkers`={n}", n, d)
            theta = np.tile(theta, (n, 1))
        elif theta.ndim == 2 and theta.shape[1] == d:
            if theta.shape[0] == 0:
                raise ValueError(f"`theta0` must hold at least one walker (shape (N, d) with N >= 1), "
                                 f"got shape {theta.shape}")
            if n_walkers is not None and n_walkers != theta.shape[0]:
                raise ValueError(f"`n_walkers`={n_walkers} does not match theta0 with {theta.shape[0]} rows")
            self._check_memory(f"`theta0` of shape {theta.shape}", theta.shape[0], d)
        else:
            raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {theta.shape}")
        theta = np.array(theta, order="C", copy=True)   # never move the caller's array
        n = theta.shape[0]
        state = EnsembleState(theta=theta, step=0, rng=gen,
                              hit=np.zeros(n, bool), first_passage_time=np.full(n, np.inf),
                              status=np.zeros(n, np.int8), failure_step=np.full(n, -1, np.int64))
        if isinstance(self.integrator, BAOAB):
            # momenta start in equilibrium at the initial temperature
            D0 = float(self.schedule(0.0))
            if not 0.0 <= D0 < _INF:
                _bad_D(D0, 0, 0.0)
            state.momentum = np.sqrt(D0) * gen.standard_normal(theta.shape, dtype=self.dtype)
        if self.controller is not None:
            state.controller = self.controller.init_state(n)
        if self.target is not None:
            inside = self._target(theta)
            state.hit |= inside
            state.first_passage_time[inside] = 0.0
        return state

    def _check_memory(self, what: str, n: int, d: int) -> None:
        """Refuse before allocating an ensemble whose working arrays do not fit in memory.

        Counted: the arrays of shape (N, d) the engine holds at once (θ, noise, gradient and one
        temporary of the step or of a record; BAOAB adds the momentum and its temporary, a
        preconditioner two temporaries) plus about 64 bytes per walker of per-walker vectors
        (status, first passage, C, loss). ``store_trajectory`` comes on top."""
        arrays = 4 + (2 if isinstance(self.integrator, BAOAB) or self.integrator.preconditioner is not None
                      else 0)
        check_memory(f"{what} (d={d}, {self.dtype.name}; {arrays} working arrays of shape (N, d) "
                     "plus per-walker vectors)", float(n) * (arrays * d * self.dtype.itemsize + 64))

    def record_interval(self, n_steps: int) -> int:
        """Steps between records when :meth:`advance` moves ``n_steps`` steps: ``record_every`` when
        given, else max(``MIN_RECORD_EVERY``, ⌈n_steps / ``DEFAULT_RECORDS``⌉). Records fall on the
        steps that are multiples of it, and on the last step. The default depends on the length of
        each call: a run advanced in pieces records on one grid only when ``record_every`` is set."""
        if self.record_every is not None:
            return self.record_every
        return max(MIN_RECORD_EVERY, -(-n_steps // DEFAULT_RECORDS))

    def _target(self, theta):
        mask = np.asarray(self.target(theta))
        if mask.shape != (theta.shape[0],) or mask.dtype != bool:
            raise ValueError(f"`target` must return a boolean array of shape ({theta.shape[0]},), "
                             f"got {mask.dtype} {mask.shape}")
        return mask

    # -- the loop ---------------------------------------------------------------------
    def advance(self, state: EnsembleState, n_steps: int, *, on_record: Callable | None = None,
                progress: bool = False, _result: SimulationResult | None = None) -> SimulationResult:
        """Advance ``state`` (in place) by ``n_steps``; record every ``record_every`` steps and at the
        last step. ``on_record(row)`` receives each record row (dict of scalars) as it is made."""
        n_steps = check_int("n_steps", n_steps, minimum=0)
        L, dt, integ, rng = self.landscape, self.dt, self.integrator, state.rng
        theta = state.theta
        n, d = theta.shape
        k = self.record_interval(n_steps)
        baoab = isinstance(integ, BAOAB)
        ctrl = self.controller
        recorder = _Recorder(self, n, d)
        noise = np.empty_like(theta)
        grad = np.empty_like(theta)
        interventions: list[tuple[int, np.ndarray]] = []
        alive = state.status == STATUS_OK
        all_alive = bool(alive.all())
        t_wall = _time.perf_counter()
        end = state.step + n_steps
        bar = _progress_bar(progress, n_steps)
        stopped_early = False

        grad_fn = _grad_fn(L, grad)
        # a constant D is read once per call instead of through the schedule at every step
        D_const = float(self.schedule.D) if type(self.schedule) is Constant else None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            L.grad_into(theta, grad)
            while state.step < end:
                s = state.step
                t = s * dt
                D_t = D_const if D_const is not None else float(self.schedule(t))
                if not 0.0 <= D_t < _INF:
                    _bad_D(D_t, s, t)
                D = D_t if ctrl is None else D_t * state.controller["multiplier"][:, None]
                at_record = s % k == 0
                if at_record or ctrl is not None:
                    g2, Cw = recorder.walker_C(grad, D)
                if at_record:
                    recorder.record(s, t, theta, g2, Cw, D, alive, all_alive, state, on_record)
                    if recorder.flagged:
                        alive, all_alive = self._fail_flagged(state, recorder, interventions)
                if ctrl is not None:
                    fired = ctrl.update(state.controller, s, np.where(alive, Cw, np.inf))
                    if fired.size:
                        interventions.append((s, fired))
                    D = D_t * state.controller["multiplier"][:, None]
                rng.standard_normal(out=noise, dtype=self.dtype)
                if baoab:
                    grad = integ.step(theta, grad, noise, D, dt, {"momentum": state.momentum}, grad_fn)
                else:
                    integ.step(theta, grad, noise, D, dt, None)
                state.step = s + 1
                if self.target is not None:
                    newly = self._target(theta) & ~state.hit
                    if newly.any():
                        state.hit |= newly
                        state.first_passage_time[newly] = state.step * dt
                    if self.stop_when_all_hit and state.hit[alive].all():
                        stopped_early = True
                if state.step % self.check_every == 0 or state.step == end or stopped_early:
                    all_alive = self._check_finite(state, alive, all_alive, recorder, interventions)
                    alive = state.status == STATUS_OK
                if not baoab:
                    L.grad_into(theta, grad)
                if bar is not None and (state.step % 500 == 0 or state.step == end):
                    bar.update(state.step - (end - n_steps) - bar.n)
                if stopped_early:
                    break
            s = state.step
            D_t = float(self.schedule(s * dt))
            if not 0.0 <= D_t < _INF:
                _bad_D(D_t, s, s * dt)
            D = D_t if ctrl is None else D_t * state.controller["multiplier"][:, None]
            if not recorder.steps or recorder.steps[-1] != s:
                g2, Cw = recorder.walker_C(grad, D)
                recorder.record(s, s * dt, theta, g2, Cw, D, alive, all_alive, state, on_record)
                if recorder.flagged:
                    self._fail_flagged(state, recorder, interventions)
        if bar is not None:
            bar.close()
        res = recorder.result(state, interventions, _time.perf_counter() - t_wall)
        if stopped_early:
            res.messages.append(f"stopped at step {state.step}: every live walker reached the target")
        return res

    def _check_finite(self, state, alive, all_alive, recorder, interventions) -> bool:
        finite = np.isfinite(state.theta).all(axis=1)
        newly_bad = alive & ~finite
        if not newly_bad.any():
            return all_alive
        idx = np.flatnonzero(newly_bad)
        window = f"between steps {max(0, state.step - self.check_every)} and {state.step}"
        self._fail(state, idx, f"{idx.size} walker(s) went non-finite {window} (t ≤ {state.step * self.dt:g}); "
                   f"first indices {idx[:10].tolist()}. Reduce dt or D, or check the gradient.",
                   recorder, interventions)
        return False

    def _fail_flagged(self, state, recorder, interventions):
        """Mark the walkers whose loss or gradient was non-finite at the record just made (at its
        step) as failed, like a walker whose θ went non-finite; return the new (alive, all_alive)."""
        flagged = np.unique(np.concatenate(recorder.flagged))
        recorder.flagged.clear()
        idx = flagged[state.status[flagged] == STATUS_OK]
        if idx.size:
            self._fail(state, idx, f"{idx.size} walker(s) have a non-finite θ, loss or gradient at step "
                       f"{state.step} (t = {state.step * self.dt:g}); first indices {idx[:10].tolist()}. "
                       "Check the landscape's value/grad there, or reduce dt or D.", recorder, interventions)
        alive = state.status == STATUS_OK
        return alive, bool(alive.all())

    def _fail(self, state, idx, msg, recorder, interventions):
        state.status[idx] = STATUS_NONFINITE
        state.failure_step[idx] = state.step
        recorder.messages.append(msg)
        if self.on_nonfinite == "raise":
            raise NonFiniteError(msg, recorder.result(state, interventions, float("nan")))


def _bad_D(value, step, t):
    raise ValueError(f"`D` (the schedule D(t)) returned {value!r} at step {step} (t = {t:g}); "
                     "D(t) must be finite and >= 0")


def _grad_fn(L, buf):
    return lambda th: L.grad_into(th, buf)


class _Recorder:
    def __init__(self, sim: Simulation, n: int, d: int):
        self.sim = sim
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
        gives a huge C instead of 0/0."""
        if self._g2 is None:
            self._g2 = np.empty(grad.shape[0], grad.dtype)
            self._C = np.empty(grad.shape[0])
        np.einsum("ij,ij->i", grad, grad, out=self._g2)
        Dw = D if np.ndim(D) == 0 else D[:, 0]
        consolidation_ratio_from_norm2(self._g2, np.maximum(Dw, 1e-300), self.d, out=self._C)
        return self._g2, self._C

    def _scratch_like(self, x):
        """A reused work array of x's shape and dtype (statistics without a fresh temporary)."""
        s = self._scratch
        if s is None or s.shape != x.shape or s.dtype != x.dtype:
            s = self._scratch = np.empty_like(x)
        return s

    def _put(self, key, val):
        self.rows.setdefault(key, []).append(val)

    def record(self, step, t, theta, g2, Cw, D, alive, all_alive, state, on_record):
        """One record row from θ and the per-walker ‖∇L‖² and C that :meth:`walker_C` made at this step.

        The finite check rides on the sums the statistics need anyway: a finite sum of the ‖∇L‖²
        (all ≥ 0) and of the losses means every term is finite; the per-walker mask is built only
        when a sum is not finite."""
        sim = self.sim
        sel = slice(None) if all_alive else alive
        th, g2, C = theta[sel], g2[sel], Cw[sel]
        obs = sim.observables
        lv = sim.landscape.value(th) if "loss" in obs and th.shape[0] else None
        sum_g2 = np.add.reduce(g2)
        sum_lv = None if lv is None else np.add.reduce(lv)
        if not (np.isfinite(sum_g2) and (lv is None or np.isfinite(sum_lv))):
            ok = np.isfinite(g2) if lv is None else np.isfinite(g2) & np.isfinite(lv)
            if not ok.all():
                # these walkers fail at this step (Simulation._fail_flagged); the record leaves them out
                idx = np.flatnonzero(alive)[~ok]
                self.flagged.append(idx)
                alive = alive.copy()
                alive[idx] = False
                sel = alive
                th, C, g2 = th[ok], C[ok], g2[ok]
                lv = None if lv is None else lv[ok]
                sum_g2 = np.add.reduce(g2)
                sum_lv = None if lv is None else np.add.reduce(lv)
        scalar_D = np.ndim(D) == 0
        D_mean = float(D) if scalar_D else float(np.mean(D))
        self.steps.append(step)
        self.times.append(t)
        self.D_hist.append(D_mean)
        row = {"step": step, "t": t}
        if th.shape[0]:
            if "loss" in obs:
                row["loss_mean"], row["loss_std"] = _mean_std(lv, sum_lv, self._scratch_like(lv))
                if sim.record_walkers:
                    self._put("loss_walkers", _pad(lv, alive, self.n))
            mean_g2 = sum_g2 / g2.shape[0]                     # = np.mean(g2), bit for bit
            if "grad_norm2" in obs:
                row["grad_norm2_mean"] = float(mean_g2)
            if "C" in obs:
                D_ens = D_mean if scalar_D else np.mean(np.asarray(D)[sel, 0])
                row["C_ensemble"] = float(consolidation_ratio_from_norm2(mean_g2, D_ens, self.d))
                row["C_median"] = _median(C, self._scratch_like(C))
                if sim.record_walkers:
                    self._put("C_walkers", _pad(C, alive, self.n))
            if "mean" in obs:
                self._put("mean", th.mean(axis=0))
            if "var" in obs:
                self._put("var", th.var(axis=0))
        row["D"] = D_mean
        row["n_alive"] = int(np.count_nonzero(alive))
        if sim.target is not None:
            row["fraction_hit"] = float(np.mean(state.hit))
        for key, val in row.items():
            if key not in ("step", "t"):
                self._put(key, val)
        for i in range(min(sim.track_walkers, self.n)):
            for j in range(self.d):
                row[f"w{i}_{j}"] = float(theta[i, j])
        if sim.store_trajectory:
            self.traj.append(theta.copy())
        if on_record is not None:
            on_record(row)

    def result(self, state, interventions, wall) -> SimulationResult:
        records = {k: np.asarray(v) for k, v in self.rows.items()}
        return SimulationResult(
            times=np.asarray(self.times), steps=np.asarray(self.steps, dtype=np.int64), records=records,
            final_theta=state.theta.copy(), first_passage_time=state.first_passage_time.copy(),
            hit=state.hit.copy(), status=state.status.copy(), failure_step=state.failure_step.copy(),
            D_history=np.asarray(self.D_hist), interventions=interventions, state=state,
            dt=self.sim.dt, wall_time=wall,
            trajectory=np.stack(self.traj) if self.traj else None, messages=list(self.messages))


def _mean_std(x, total, scratch):
    """``(np.mean(x), np.std(x))`` of a 1-D array as floats, equal bit for bit, given
    ``total = np.add.reduce(x)`` and with the centred squares in ``scratch`` (x's shape and dtype)
    instead of a fresh temporary."""
    if x.dtype.kind != "f":
        return float(np.mean(x)), float(np.std(x))
    n = x.shape[0]
    mean = total / n
    np.subtract(x, mean, out=scratch)
    np.multiply(scratch, scratch, out=scratch)
    return float(mean), float(np.sqrt(np.add.reduce(scratch) / n))


def _median(x, scratch):
    """``np.median(x)`` of a 1-D float array as a float, equal bit for bit, using ``scratch``.

    One partition at the upper middle, then a max over each half (the upper one to detect NaN, which
    partitions sort last); numpy's median partitions at two or three places at once (the middle
    pair and the last element), which measured 4–5× slower on 10⁴ and 10⁵ values."""
    n = x.shape[0]
    np.copyto(scratch, x)
    h = n // 2
    scratch.partition(h)
    if np.isnan(np.max(scratch[h:])):
        return float("nan")
    if n % 2:
        return float(scratch[h])
    return float((np.max(scratch[:h]) + scratch[h]) / 2)


def _pad(values, alive, n):
    if values.shape[0] == n:
        return values.copy()
    out = np.full(n, np.nan)
    out[alive] = values
    return out


def _progress_bar(progress, total):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="langevin", unit="step", mininterval=0.5, leave=False)


def simulate(landscape: Landscape, theta0, D=0.1, dt: float = 1e-3, n_steps: int = 1000, *,
             n_walkers: int | None = None, rng=None, seed=None, state: EnsembleState | None = None,
             on_record: Callable | None = None, progress: bool = False, **options) -> SimulationResult:
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
        The run's single source of randomness.
    state : EnsembleState
        Continue a previous run (``result.state``) instead of starting from ``theta0``.
    **options
        ``integrator`` ("euler" | "baoab"), ``friction``, ``preconditioner``, ``divergence``,
        ``record_every`` (default: every max(20, ⌈n_steps/50⌉) steps and at the last step, see
        :meth:`Simulation.record_interval`), ``observables``, ``record_walkers``,
        ``store_trajectory``, ``target``, ``stop_when_all_hit``, ``controller``
        (:class:`AdaptiveNoise`), ``dtype``,
        ``on_nonfinite`` ("record" | "raise"), ``check_every``, ``track_walkers`` (positions of the
        first k walkers added to each record row as ``w{i}_{j}``).
    """
    sim = Simulation(landscape, D, dt, **options)
    if state is None:
        state = sim.init_state(theta0, n_walkers=n_walkers, rng=rng, seed=seed)
    return sim.advance(state, n_steps, on_record=on_record, progress=progress)
