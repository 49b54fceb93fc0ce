"""Stationary state and time evolution of the discrete Fokker–Planck equation dρ/dt = A ρ.

Time stepping (t is dynamics time; the step ``dt`` is adjusted down so that every record time
is hit exactly):

* ``"tr-bdf2"`` (default) — one trapezoidal stage to t + γΔt, then BDF2, γ = 2 − √2; second
  order, L-stable: its amplification R(z) → 0 as z → −∞, but for large finite |z| it is
  ≈ −4.8/|z|, so the stiff modes of a sharp initial density would change sign at every step
  (ringing: −31 % of the peak from a one-cell start at the quick-start Δt). The first step is
  therefore two implicit-Euler half steps (Rannacher start-up, one extra LU, then dropped), as
  for Crank–Nicolson. With this γ both stages use the same matrix I − (1 − 1/√2)Δt·A, so one
  sparse LU (``splu``) is factorised and reused for every later step.
* ``"crank-nicolson"`` — second order, A-stable; the first step is replaced by two implicit
  Euler half steps (Rannacher start-up, same LU as CN's left side) to damp the
  non-smooth modes of a sharp initial density.
* ``"implicit-euler"`` — first order; (I − Δt A)^{−1} is a non-negative, mass-preserving
  matrix, so densities stay non-negative and the relative entropy to the stationary law
  decreases at every step exactly.

A time-dependent temperature (annealing) is a callable ``D_schedule(t)``; D is held at
its mid-step value over each step (the midpoint rule: second order in Δt, measured) and LU
factors are cached per distinct (D, Δt).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla

from shld._validation import check_choice, check_finite_array, check_int, check_positive
from shld.fokker_planck.elimination import Elimination, SingularGeneratorError, nested_dissection_rank

METHODS = ("tr-bdf2", "crank-nicolson", "implicit-euler")
_GAMMA = 2.0 - math.sqrt(2.0)


def stationary_state(op, *, check_unique: bool = True) -> np.ndarray:
    """The normalised stationary density (null vector of A), shape ``grid.shape``.

    A gradient drift with constant D: the discrete Gibbs density ∝ e^{−U_i/D}, the exact null
    vector of A (detailed balance holds face by face), computed in closed form. Otherwise the
    subtraction-free elimination of :mod:`shld.fokker_planck.elimination` (GTH): every entry
    keeps its relative accuracy even where ρ spans e^{ΔU/D} ≫ 1/ε, where a sparse LU of A would
    return noise. With ``check_unique`` the chain's communicating classes are counted
    (a graph computation, exact): more than one closed class means the stationary state is not
    unique and raises ``ValueError``.
    """
    if not op.conservative:
        raise ValueError(f"`op` has an absorbing boundary {op.boundary}: its only stationary state is ρ = 0; "
                         "use shld.fokker_planck.mean_first_passage_time / escape_rate instead")
    if op.is_gradient and not check_unique:
        return op.gibbs()
    N, _ = op.transition_rates()
    label, closed = _closed_classes(N)
    if check_unique and closed.sum() > 1:
        sizes = np.bincount(label)[closed]
        raise ValueError(f"`op` has no unique stationary state: the chain splits into {int(closed.sum())} "
                         f"closed regions (cells: {sizes.tolist()}) that no rate connects (rates underflow "
                         "to 0 across a region, e.g. D(θ) or the drift makes a wall); refine the grid, raise D "
                         "or change the boundary")
    if op.is_gradient:
        return op.gibbs()
    pin = int(np.argmax(closed[label]))     # a cell of a closed class: never eliminated
    try:
        rho = Elimination(N, np.zeros(op.grid.size), keep_last=pin,
                          rank=nested_dissection_rank(op.grid.shape).reshape(-1)).stationary()
    except SingularGeneratorError as exc:
        raise ValueError(f"`op` has no unique stationary state: {exc}") from exc
    return (rho / op.grid.cell_volume).reshape(op.grid.shape)


def _closed_classes(N: sp.csr_matrix):
    """Labels of the strongly connected components and a flag per component: closed (no rate
    leaves it)."""
    n_comp, label = csgraph.connected_components(N, directed=True, connection="strong")
    coo = N.tocoo()
    leaves = label[coo.row] != label[coo.col]
    closed = np.ones(n_comp, dtype=bool)
    closed[label[coo.row[leaves]]] = False
    return label, closed


class _Stepper:
    """LU factors for one (A, Δt, method); ``step(u)`` advances by Δt.

    The second-order methods are written in increment form u_{n+1} = u_n + M^{−1}(…A u_n…)
    with A u evaluated by ``apply`` (flux form when available): the round-off in Σu then
    scales with the small increment rather than with u, so mass drifts by ≲ 1e-15 per step.
    Implicit Euler keeps u_{n+1} = M^{−1} u_n, which is exactly non-negative.
    """

    def __init__(self, A: sp.csr_matrix, dt: float, method: str, apply=None):
        n = A.shape[0]
        eye = sp.identity(n, format="csr")
        self.method = method
        self.A = A
        self.apply = apply if apply is not None else (lambda u: A @ u)
        self.dt = dt
        self.started = method == "implicit-euler"   # the second-order methods start with implicit Euler
        if method == "implicit-euler":
            self.lu = spla.splu((eye - dt * A).tocsc())
        elif method == "crank-nicolson":
            self.lu = spla.splu((eye - 0.5 * dt * A).tocsc())
        else:
            self.c = (1.0 - 1.0 / math.sqrt(2.0)) * dt  # = γΔt/2 = (1−γ)/(2−γ)·Δt
            self.lu = spla.splu((eye - self.c * A).tocsc())

    def step(self, u: np.ndarray) -> np.ndarray:
        if self.method == "implicit-euler":
            return self.lu.solve(u)
        if not self.started:
            # Rannacher start-up: two implicit-Euler half steps with the LU of I − ½Δt·A (Crank–Nicolson's own
            # left side; TR-BDF2 factorises it for this one step)
            self.started = True
            half = self.lu if self.method == "crank-nicolson" else spla.splu(
                (sp.identity(u.shape[0], format="csr") - 0.5 * self.dt * self.A).tocsc())
            u = u + half.solve(0.5 * self.dt * self.apply(u))
            return u + half.solve(0.5 * self.dt * self.apply(u))
        if self.method == "crank-nicolson":
            return u + self.lu.solve(self.dt * self.apply(u))
        # TR-BDF2: u* = u + δ*, δ* = M⁻¹(2cAu); u_{n+1} = u + M⁻¹(cAu + δ*/(γ(2−γ)))
        r = self.c * self.apply(u)
        dstar = self.lu.solve(2.0 * r)
        return u + self.lu.solve(r + dstar / (_GAMMA * (2.0 - _GAMMA)))


@dataclass
class Evolution:
    """Result of :func:`evolve`: ``times`` (n_records,), ``densities`` (n_records, *grid.shape),
    ``mass`` (n_records,) = ∫ρ, ``min_density`` (n_records,), ``n_steps``, ``dt`` used,
    ``method``, ``D`` (n_records,) the temperature at each record."""

    times: np.ndarray
    densities: np.ndarray
    mass: np.ndarray
    min_density: np.ndarray
    n_steps: int
    dt: float
    method: str
    D: np.ndarray

    @property
    def final(self) -> np.ndarray:
        return self.densities[-1]


def evolve(op, rho0, t_final: float, dt: float, *, method: str = "tr-bdf2", record_times=None,
           n_records: int = 11, D_schedule=None, normalise: bool = True) -> Evolution:
    """Integrate dρ/dt = A ρ from ρ(0) = ``rho0`` to ``t_final``.

    ``rho0`` is validated against the grid (shape, finite, ≥ 0, positive mass) and scaled to
    mass 1 when ``normalise``. Records at ``record_times`` (sorted, in [0, t_final]; 0 and ``t_final``
    are added when missing, so the evolution always ends at ``t_final``) or at
    ``n_records`` evenly spaced times including 0 and ``t_final``. Each interval between
    records is split into equal steps no longer than ``dt``. ``D_schedule(t) -> D`` makes the
    temperature time dependent (needs a constant-D operator). See the module docstring for
    the methods.
    """
    method = check_choice("method", method, METHODS)
    t_final = check_positive("t_final", t_final)
    dt = check_positive("dt", dt)
    grid = op.grid
    rho = grid.check_density(rho0, "rho0", normalise=normalise).reshape(-1)
    if record_times is None:
        record_times = np.linspace(0.0, t_final, check_int("n_records", n_records, minimum=2))
    else:
        record_times = check_finite_array("record_times", record_times, ndim=1)
        bad = np.any(np.diff(record_times) <= 0) or record_times[0] < 0
        if bad or record_times[-1] > t_final * (1 + 1e-12):
            raise ValueError(f"`record_times` must be increasing within [0, t_final={t_final}], got "
                             f"{record_times[:5]}...")
        if record_times[0] > 0:
            record_times = np.concatenate([[0.0], record_times])
        if record_times[-1] < t_final * (1 - 1e-12):    # the evolution runs to t_final, as asked, and ends there
            record_times = np.concatenate([record_times, [t_final]])
    if D_schedule is not None:
        if not callable(D_schedule):
            raise TypeError(f"`D_schedule` must be callable t -> D, got {D_schedule!r}")
        if op.D is None:
            raise ValueError("`D_schedule` needs an operator with a constant D")
    cache: OrderedDict = OrderedDict()

    def stepper(D_now, h):
        key = (None if D_now is None else float(f"{D_now:.12g}"), float(f"{h:.12g}"))
        if key not in cache:
            o = op if D_now is None else op.with_D(D_now)
            cache[key] = _Stepper(o.matrix, h, method, apply=o.apply)
            if len(cache) > 8:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def D_at(t):
        if D_schedule is None:
            return None
        return check_positive("D_schedule(t)", D_schedule(t))

    out = [rho.copy()]
    Ds = [op.D if D_schedule is None else D_at(0.0)]
    n_steps = 0
    t = record_times[0]
    h_used = dt
    for t_next in record_times[1:]:
        span = t_next - t
        m = max(1, int(math.ceil(span / dt * (1 - 1e-12))))
        h = span / m
        h_used = h
        for s in range(m):
            st = stepper(D_at(t + (s + 0.5) * h), h)
            if n_steps + s > 0:
                st.started = True  # the Rannacher start-up is for the very first step only
            rho = st.step(rho)
        n_steps += m
        t = t_next
        out.append(rho.copy())
        Ds.append(op.D if D_schedule is None else D_at(t))
    dens = np.stack(out).reshape((len(out),) + grid.shape)
    flat = dens.reshape(len(out), -1)
    return Evolution(times=np.asarray(record_times, dtype=float), densities=dens,
                     mass=flat.sum(axis=1) * grid.cell_volume, min_density=flat.min(axis=1),
                     n_steps=n_steps, dt=h_used, method=method,
                     D=np.asarray([np.nan if d is None else d for d in Ds], dtype=float))
