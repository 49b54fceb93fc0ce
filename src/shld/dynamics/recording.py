"""The engine's records: ensemble statistics of the live walkers every ``record_every`` steps, the
per-walker consolidation ratio C the controller reads, and the assembly of the run's
:class:`~shld.dynamics.state.SimulationResult` (one home for both, used by
:class:`shld.dynamics.simulate.Simulation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shld.dynamics.state import STATUS_OK, SimulationResult, _host
from shld.observables.consolidation import consolidation_ratio_from_norm2

if TYPE_CHECKING:
    from shld.dynamics.simulate import Simulation


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
        :func:`shld.observables.consolidation_ratio_from_norm2`; at D = 0 it is IEEE's answer on every
        backend and in every record: C = inf where ∇L ≠ 0 and NaN where ∇L = 0 (0/0). On a non-numpy backend
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
            Dw = float(D) if np.ndim(D) == 0 else D[:, 0]
            return self._g2, consolidation_ratio_from_norm2(self._g2, Dw, self.d)
        if self._C is None:
            self._C = np.empty(grad.shape[0])
        g2 = bk.to_numpy(self._g2)
        Dw = D if np.ndim(D) == 0 else bk.to_numpy(D[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            consolidation_ratio_from_norm2(g2, Dw, self.d, out=self._C)
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
        if not th.shape[0]:
            self._put_empty(obs)
        else:
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
                with np.errstate(divide="ignore", invalid="ignore"):
                    row["C_ensemble"] = float(consolidation_ratio_from_norm2(mean_g2, D_ens, self.d))
                    if C is not None and (not scalar_D or D_mean > 0):
                        row["C_median"] = sim.walker_backend.median(C, np.empty_like(C) if host_C
                                                                    else self._scratch_like(C))
                    else:   # scalar D: the median of C is C of the median ‖∇L‖² (C is increasing in it; at
                        # D = 0 this gives inf for a median ∇L ≠ 0 where np.median would pass on a 0/0 NaN)
                        row["C_median"] = float(consolidation_ratio_from_norm2(
                            float(bk.median(g2, self._scratch_like(g2))), D_mean, self.d))
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

    def _put_empty(self, obs):
        """A record with no live walker (every one failed): NaN statistics, so that every record has
        one row per time in ``times`` (plots and the chunk merge index them together)."""
        nan = float("nan")
        if "loss" in obs:
            self._put("loss_mean", nan)
            self._put("loss_std", nan)
            if self.sim.record_walkers:
                self._put("loss_walkers", np.full(self.n, nan))
        if "grad_norm2" in obs:
            self._put("grad_norm2_mean", nan)
        if "C" in obs:
            self._put("C_ensemble", nan)
            self._put("C_median", nan)
            if self.sim.record_walkers:
                self._put("C_walkers", np.full(self.n, nan))
        for key in ("mean", "var"):
            if key in obs:
                self._put(key, np.full(self.d, nan))

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
