"""The seed's reference class, kept as an API and rebuilt on the ensemble engine.

``StochasticHarmonicLearning`` has the seed's constructor, methods and ``train`` return keys, so the
seed's "Practical Usage" snippet runs unchanged. Departures from the seed's code, each a bug fix:

1. **lr vs dt** — the seed's ``step`` used ``lr`` for the drift and ``dt`` for the noise,
   θ ← θ − lr·∇L + √(2D·dt)·ξ, so its stationary temperature is D·dt/lr, not D (with the defaults
   lr = 0.01, dt = 1 it is 100·D). Here one time step h is used for both, θ ← θ − h·∇L + √(2D·h)·ξ,
   with h = ``dt`` when given and h = ``lr`` otherwise (an SGD step of learning rate η is h = η).
   ``convention="seed"`` reproduces the literal update for comparison.
2. **Noise restore** — the seed's ``train`` multiplies D by 5 when C < threshold but its restore branch
   can never run (it compares the step with the intervention it has just appended), so D grows on
   every trigger. Here D is boosted for ``hold_steps`` (10) steps and then restored
   (:class:`shld.dynamics.AdaptiveNoise`); ``restore_noise=False`` reproduces the seed's behaviour.
3. **Randomness** — the seed drew from numpy's global state; here a ``seed`` or ``rng`` gives one
   ``numpy.random.Generator`` per object, so the same seed gives the same bits.
4. **Barrier height** — the seed's ``estimate_barrier_height`` returned max(L(target) − L(current), 0),
   the difference of the end points, which is zero for a symmetric double well. Here it is the
   maximum of L along the straight segment minus L(current) (an upper bound on the barrier of the
   minimum-energy path); ``method="seed"`` gives the seed's number.
5. **Escape time** — the seed's τ ≈ exp(ΔE/D) has no prefactor; it is kept (and returns ``inf``
   without overflow warnings for huge ΔE/D). Give the curvatures to get the Kramers–Langer time
   1/Γ = 2π/√(U''(min)·|U''(saddle)|)·exp(ΔE/D) instead.
"""

from __future__ import annotations

import math

import numpy as np

from shld._validation import as_generator, check_choice, check_finite_array, check_int, check_positive
from shld.dynamics import AdaptiveNoise, NonFiniteError, simulate
from shld.landscapes.callables import FunctionLandscape


class StochasticHarmonicLearning:
    """Langevin dynamics optimiser with consolidation monitoring (the seed's API).

    Update (one step of size h, overdamped Euler–Maruyama; t = step·h):
        θ ← θ − h·∇L(θ) + √(2·D·h)·ξ,   ξ ~ N(0, I),   h = dt if given else lr.
    Stationary law ∝ exp(−L/D). C = ‖∇L‖²/(D·d).
    """

    def __init__(self, loss_fn, grad_fn, dim, lr=0.01, noise_scale=0.01, *, seed=None, rng=None,
                 convention: str = "consistent"):
        self.loss_fn = loss_fn
        self.grad_fn = grad_fn
        self.dim = check_int("dim", dim, minimum=1)
        self.lr = check_positive("lr", lr)
        self.D = check_positive("noise_scale", noise_scale, allow_zero=True)
        self.convention = check_choice("convention", convention, ["consistent", "seed"])
        self.rng = as_generator(rng, seed)
        self.landscape = FunctionLandscape(loss_fn, grad_fn, self.dim)

    # -- the seed's methods -----------------------------------------------------------
    def _h(self, dt):
        if dt is None:
            return self.lr
        return check_positive("dt", dt)

    def _theta(self, theta, name="theta"):
        return check_finite_array(name, theta, ndim=1, last_dim=self.dim)

    def _grad(self, theta):
        g = np.asarray(self.grad_fn(theta), dtype=float)
        if g.shape != (self.dim,):
            raise ValueError(f"`grad_fn` must return shape ({self.dim},), got {g.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"`grad_fn` returned a non-finite gradient {g} at theta={theta}")
        return g

    def step(self, theta, dt=None):
        """One Langevin step from ``theta``; returns the new θ (the input is not modified)."""
        theta = self._theta(theta)
        g = self._grad(theta)
        xi = self.rng.standard_normal(self.dim)
        if self.convention == "seed":
            h_noise = 1.0 if dt is None else check_positive("dt", dt)
            return theta - self.lr * g + math.sqrt(2.0 * self.D * h_noise) * xi
        h = self._h(dt)
        return theta - h * g + math.sqrt(2.0 * self.D * h) * xi

    def consolidation_ratio(self, theta):
        """C = ‖∇L(θ)‖²/(D·d); ``inf`` when D = 0 and the gradient is nonzero."""
        g = self._grad(self._theta(theta))
        g2 = float(g @ g)
        if self.D == 0:
            return math.inf if g2 > 0 else math.nan
        return g2 / (self.D * self.dim)

    def estimate_barrier_height(self, theta_current, theta_target, n_points: int = 257,
                                method: str = "path"):
        """Barrier from ``theta_current`` towards ``theta_target``.

        ``method="path"``: max of L on the straight segment minus L(current) (≥ 0);
        ``method="seed"``: the seed's max(L(target) − L(current), 0).
        """
        a = self._theta(theta_current, "theta_current")
        b = self._theta(theta_target, "theta_target")
        check_choice("method", method, ["path", "seed"])
        l0 = float(self.loss_fn(a))
        if method == "seed":
            return max(float(self.loss_fn(b)) - l0, 0.0)
        s = np.linspace(0.0, 1.0, check_int("n_points", n_points, minimum=2))[:, None]
        path = a + s * (b - a)
        values = np.asarray(self.landscape.value(path), dtype=float)
        return max(float(np.max(values)) - l0, 0.0)

    def escape_time(self, barrier_height, curv_min=None, curv_saddle=None):
        """Seed's form τ ≈ exp(ΔE/D) (no prefactor), or with both curvatures the overdamped
        Kramers–Langer time 2π/√(U''_min·|U''_saddle|)·exp(ΔE/D). Returns ``inf`` (no warning)
        when the exponent overflows; 0 for ΔE < 1e-10 (as in the seed)."""
        dE = check_positive("barrier_height", barrier_height, allow_zero=True, allow_inf=True)
        if dE < 1e-10:
            return 0.0
        if self.D == 0:
            return math.inf
        log_t = dE / self.D
        if curv_min is not None or curv_saddle is not None:
            k_min = check_positive("curv_min", curv_min)
            k_s = abs(check_positive("curv_saddle", abs(curv_saddle) if curv_saddle is not None else None))
            # in logs: √(k_min·k_s) underflows for curvatures near 1e-300
            log_t += math.log(2.0 * math.pi) - 0.5 * (math.log(k_min) + math.log(k_s))
        return math.inf if log_t > 709.0 else math.exp(log_t)

    # -- training -----------------------------------------------------------------------
    def train(self, theta_init, n_steps=1000, dt=None, adaptive_noise=True, C_threshold=0.5, *,
              boost_factor: float = 5.0, hold_steps: int = 10, restore_noise: bool = True):
        """Run ``n_steps`` Langevin steps from ``theta_init`` with the seed's adaptive-noise rule.

        Returns the seed's dict: ``trajectory`` (n_steps+1, d), ``losses`` (n_steps,),
        ``consolidations`` (n_steps,), ``interventions`` (list of step indices), ``final_theta``,
        ``final_loss``; plus ``D_history`` (n_steps,), the D used after each step.
        ``dt=None`` uses h = lr (see the module docstring for the seed's lr/dt mix-up).
        """
        theta0 = self._theta(theta_init, "theta_init")
        n_steps = check_int("n_steps", n_steps, minimum=1)
        check_positive("C_threshold", C_threshold)
        if self.convention == "seed":
            h = self.lr
            h_noise = 1.0 if dt is None else check_positive("dt", dt)
            D_engine = self.D * h_noise / self.lr       # so that √(2·D_engine·lr) = √(2·D·dt)
        else:
            h = self._h(dt)
            D_engine = self.D
        c_scale = D_engine / self.D if self.D > 0 else 1.0   # C_engine = C_seed / c_scale
        controller = None
        if adaptive_noise:
            # the seed tests `step > 50` on θ after its step `step`; that θ is the engine's θ_{step+1}
            controller = AdaptiveNoise(threshold=C_threshold / c_scale, factor=boost_factor,
                                       hold_steps=hold_steps, min_step=52, restore=restore_noise)
        try:
            res = simulate(self.landscape, theta0[None, :], D=D_engine, dt=h, n_steps=n_steps,
                           rng=self.rng, record_every=1, record_walkers=True, store_trajectory=True,
                           observables=("loss", "C"), controller=controller, on_nonfinite="raise",
                           check_every=1)
        except NonFiniteError as exc:
            hint = (f"; with restore_noise=False the seed's boosts are never undone, so D grows "
                    f"×{boost_factor} at every intervention until the walk blows up: pass "
                    f"restore_noise=True" if adaptive_noise and not restore_noise else "")
            raise ValueError(f"theta became non-finite: {exc} (is `grad_fn` finite everywhere, and "
                             f"lr={self.lr} below the stability limit 2/λ_max?{hint})") from exc
        traj = res.trajectory[:, 0, :]
        losses = res.records["loss_walkers"][1:, 0]
        Cs = res.records["C_walkers"][1:, 0] * c_scale
        interventions = [int(s) - 1 for s, _ in res.interventions]
        if not restore_noise and controller is not None:
            self.D = self.D * boost_factor ** len(interventions)   # the seed's D drifts upward for good
        return {
            "trajectory": traj,
            "losses": losses,
            "consolidations": Cs,
            "interventions": interventions,
            "final_theta": traj[-1].copy(),
            "final_loss": float(losses[-1]),
            "D_history": res.D_history[1:] * c_scale,
        }
