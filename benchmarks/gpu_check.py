"""GPU check of the Langevin engine's torch backend: statistics against closed forms, then throughput.

    python benchmarks/gpu_check.py                    # on cuda (exits 0 with a message when there is none)
    python benchmarks/gpu_check.py --device cpu       # the same checks at small sizes, on this CPU

1. Statistics (torch backend on the device, fixed seeds; tolerances from standard errors, each with a
   power check that a wrong temperature is rejected):
   * Gibbs KS: double well U = (x² − 1)², D = 0.5, walkers started half in each well, Euler–Maruyama
     dt = 2e-3 to t = 10; the final positions against the exact Gibbs CDF (KS p > 1e-3), and against
     the Gibbs CDF at D/2 (must be rejected, p < 1e-6).
   * OU variance: quadratic λ = (0.5, 2, 6), D = 0.3, dt = 0.02, started in the exact discrete
     stationary law; the sample variance against the closed form D/(λ(1 − λdt/2)) within 4.5 standard
     errors √(2/(n−1))·v per coordinate; the variance at 1.25·D must be rejected (> 4.5 SE).
   * MFPT vs quadrature: double well with barrier 0.5, D = 0.4 (ΔE/D = 1.25), dt = 2e-3, from −1 to the
     target HalfSpace θ ≥ 1 with stop_when_all_hit, float32, ≤ 5·10⁴ walkers; the mean first-passage
     time against the exact 1-D quadrature within 4 standard errors plus the discrete-monitoring bias,
     and the MFPT at 1.25·D must be outside that band.
   All run once per step kernel: "eager" (a step at a time) and, where Triton is installed, "triton"
   (many steps per launch, :mod:`shld.dynamics.triton_steps`; the default on CUDA). The throughput
   table adds "controller": the eager step with the adaptive-noise controller acting at every step.
2. Throughput: ``Simulation.advance`` (double well, float32, records only at block ends), per step kernel,
   against
   ``torch.randn`` alone into a buffer of the same shape with an explicit generator on the same device,
   interleaved in blocks and synchronised; walker-steps per second, the ratio engine/randn (medians of
   the blocks) and the peak memory of the engine (``torch.cuda.max_memory_allocated``).

Prints one table; with the environment variable OUT set, also writes ``$OUT/gpu_check.json``.
Exit status: 0 when every check passed (or there is no CUDA device), 1 when a statistical check failed,
2 when a section raised (the table says which; the script never stops at the first error).
Sized to finish in well under 3 minutes on any CUDA GPU with ≥ 8 GiB free (10⁸ walkers need ≈ 4 GiB;
a size that does not fit in the free memory is skipped with the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

import numpy as np


def _sizes(device: str, walkers):
    if walkers:
        return walkers
    return [10**6, 10**7, 10**8] if device.startswith("cuda") else [10**4, 10**5]


def gibbs_check(device: str, dtype: str, n: int, kernel: str = "eager", seed: int = 12) -> dict:
    from scipy import stats

    from shld.dynamics import simulate
    from shld.landscapes import DoubleWell
    from shld.theory import gibbs_cdf_1d

    L, D = DoubleWell(barrier=1.0), 0.5
    start = np.where(np.arange(n) % 2 == 0, -1.0, 1.0)[:, None]            # both wells, symmetric
    res = simulate(L, start, D=D, dt=2e-3, n_steps=5000, seed=seed, backend="torch", device=device,
                   dtype=dtype, record_every=5000, observables=("loss",), step_kernel=kernel)
    x = res.final_theta[:, 0].astype(np.float64)
    p_ok = stats.kstest(x, gibbs_cdf_1d(L.u, D, -3.5, 3.5)).pvalue
    p_wrong = stats.kstest(x, gibbs_cdf_1d(L.u, D / 2, -3.5, 3.5)).pvalue
    # EM bias at dt = 2e-3 moves the CDF by ~1e-3, below the KS resolution 1.36/√n at these n
    return {"check": f"Gibbs KS double well ({dtype}, {kernel}, n={n})", "value": f"p={p_ok:.3g}",
            "power": f"p(D/2)={p_wrong:.1e}", "passed": bool(p_ok > 1e-3 and p_wrong < 1e-6),
            "p": float(p_ok), "p_wrong_temperature": float(p_wrong), "n_walkers": n}


def ou_check(device: str, dtype: str, n: int, kernel: str = "eager", seed: int = 4) -> dict:
    from shld.dynamics import simulate
    from shld.landscapes import Quadratic

    lam, D, dt = np.array([0.5, 2.0, 6.0]), 0.3, 0.02
    v = D / (lam * (1.0 - 0.5 * lam * dt))                 # exact Euler–Maruyama stationary variance
    theta0 = np.random.default_rng(3).standard_normal((n, 3)) * np.sqrt(v)
    res = simulate(Quadratic(eigenvalues=lam), theta0, D=D, dt=dt, n_steps=600, seed=seed, backend="torch",
                   device=device, dtype=dtype, record_every=600, observables=("loss",), step_kernel=kernel)
    var = res.final_theta.astype(np.float64).var(axis=0, ddof=1)
    se = v * np.sqrt(2.0 / (n - 1))                         # SE of a Gaussian sample variance
    z = np.abs(var - v) / se
    z_wrong = np.abs(var - 1.25 * v) / se                   # a 25 % wrong temperature
    return {"check": f"OU variance quadratic ({dtype}, {kernel}, n={n})", "value": f"max z={z.max():.2f} (<4.5)",
            "power": f"min z(1.25·D)={z_wrong.min():.1f}", "passed": bool(z.max() < 4.5 and z_wrong.min() > 4.5),
            "z": z.tolist(), "z_wrong_temperature": z_wrong.tolist(), "n_walkers": n}


def mfpt_check(device: str, dtype: str, n: int, kernel: str = "eager", seed: int = 21) -> dict:
    import math

    from shld.dynamics import HalfSpace, simulate
    from shld.landscapes import DoubleWell
    from shld.theory import mfpt_1d

    # ΔE/D = 1.25, T ≈ 9.5: every walker crosses within the step budget; the target is a HalfSpace, so the
    # triton kernel records the passages inside its launches and stops by replaying the last one
    L, D, dt = DoubleWell(barrier=0.5), 0.4, 2e-3
    n = min(n, 50_000)        # SE ≈ 0.45 % of T: the Euler–Maruyama bias (≤ the monitoring bias) stays inside
    res = simulate(L, np.array([-1.0]), n_walkers=n, D=D, dt=dt, n_steps=150_000, seed=seed,
                   target=HalfSpace(0, 1.0), stop_when_all_hit=True, record_every=150_000, observables=("loss",),
                   backend="torch", device=device, dtype=dtype, step_kernel=kernel)
    T = res.first_passage_time[res.hit]
    exact = mfpt_1d(L.u, D, -1.0, 1.0)
    # discrete monitoring sees a crossing late: an overshoot ≈ 0.5826·√(2D·dt) (Siegmund), a time bias of
    # T(b + overshoot) − T(b)
    bias = mfpt_1d(L.u, D, -1.0, 1.0 + 0.5826 * math.sqrt(2 * D * dt)) - exact
    se = float(T.std(ddof=1)) / math.sqrt(T.size)
    wrong = mfpt_1d(L.u, 1.25 * D, -1.0, 1.0)              # a 25 % wrong temperature: ≈ 30 % shorter
    band = 4.0 * se + bias
    z, z_wrong = abs(T.mean() - exact) / se, abs(T.mean() - wrong) / se
    passed = bool(res.hit.all() and abs(T.mean() - exact) < band and abs(T.mean() - wrong) > band)
    return {"check": f"MFPT vs quadrature ({dtype}, {kernel}, n={n})",
            "value": f"T={T.mean():.4g} vs {exact:.4g}, z={z:.2f} (<{band / se:.1f})",
            "power": f"z(1.25·D)={z_wrong:.1f}", "passed": passed, "T_mean": float(T.mean()), "T_exact": exact,
            "stderr": se, "monitoring_bias": bias, "all_hit": bool(res.hit.all()), "stopped_at": int(res.steps[-1]),
            "n_walkers": n}


def bench(device: str, n: int, block: int, rounds: int, kernel: str = "eager") -> dict:
    import torch

    from shld.dynamics import AdaptiveNoise, Simulation
    from shld.landscapes import DoubleWell

    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    # "controller": the eager step with the adaptive-noise controller acting on every step (its state and
    # the per-walker C on the device)
    extra = dict(step_kernel="eager", controller=AdaptiveNoise(threshold=0.5, factor=5.0, hold_steps=10,
                                                               min_step=0)) if kernel == "controller" \
        else dict(step_kernel=kernel)
    sim = Simulation(DoubleWell(barrier=1.0), D=0.25, dt=1e-3, record_every=block, observables=("loss",),
                     check_every=block, backend="torch", device=device, dtype="float32", **extra)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    state = sim.init_state(np.array([-1.0]), n_walkers=n, seed=1)
    gen = torch.Generator(device=device).manual_seed(2)
    buf = torch.empty((n, 1), dtype=torch.float32, device=device)
    sim.advance(state, 2)                                   # warm-up: kernels, allocator
    for _ in range(3):
        torch.randn(buf.shape, generator=gen, dtype=torch.float32, device=device, out=buf)
    sync()
    t_floor, t_engine = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(block):
            torch.randn(buf.shape, generator=gen, dtype=torch.float32, device=device, out=buf)
        sync()
        t_floor.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sim.advance(state, block)                           # synchronises at its end
        t_engine.append(time.perf_counter() - t0)
    f, e = float(np.median(t_floor)) / block, float(np.median(t_engine)) / block
    peak = int(torch.cuda.max_memory_allocated(device)) if cuda else None
    del state, buf
    if cuda:
        torch.cuda.empty_cache()
    return {"N": n, "dtype": "float32", "kernel": kernel, "steps_timed": block * rounds, "randn_step_s": f, "engine_step_s": e,
            "walker_steps_per_s": n / e, "randn_walker_steps_per_s": n / f, "engine_over_randn": e / f,
            "peak_memory_bytes": peak}


def _fits(device: str, n: int, kernel: str = "eager") -> str | None:
    """None when n float32 walkers (d = 1) fit in the device's free memory, else the reason."""
    if not device.startswith("cuda"):
        return None
    import torch

    from shld.dynamics import AdaptiveNoise, Simulation
    from shld.landscapes import DoubleWell

    ctrl = AdaptiveNoise() if kernel == "controller" else None
    need = n * Simulation(DoubleWell(), backend="torch", device=device, dtype="float32",
                          controller=ctrl).bytes_per_walker()
    free, _ = torch.cuda.mem_get_info(device)
    return None if need * 1.3 < free else f"needs ≈{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:<i> or cpu")
    ap.add_argument("--walkers", type=int, nargs="+", default=None,
                    help="walker counts of the throughput table (default 1e6 1e7 1e8 on cuda, 1e4 1e5 on cpu)")
    ap.add_argument("--block", type=int, default=None, help="steps per timed block (default 1000 cuda, 50 cpu)")
    ap.add_argument("--rounds", type=int, default=3, help="timed blocks per size (median taken)")
    ap.add_argument("--stat-walkers", type=int, default=None,
                    help="walkers of the statistical checks (default 200000 on cuda, 4000 on cpu)")
    ap.add_argument("--skip-stats", action="store_true")
    ap.add_argument("--kernels", nargs="+", choices=["eager", "triton", "controller"], default=None,
                    help="step kernels to check (default: eager, and on cuda triton (when Triton is installed) "
                         "and controller: the eager step with the adaptive-noise controller, bench only)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    try:
        import torch
    except ImportError:
        print("gpu_check: PyTorch is not installed; nothing to check (pip install torch).")
        return 0
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, torch.cuda.is_available() is False); "
              "nothing to check. Run with --device cpu for the CPU version at small sizes.")
        return 0
    cuda = device.startswith("cuda")
    if not cuda:
        # one thread: on a shared CPU torch's thread pool waits for busy cores (10-100× slower ops); the
        # randn floor is single-threaded anyway, so the ratio compares like with like
        torch.set_num_threads(1)
    name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    block = args.block or (1000 if cuda else 50)
    n_stat = args.stat_walkers or (200_000 if cuda else 4000)
    from shld.dynamics.triton_steps import triton_available

    has_triton = triton_available()
    kernels = args.kernels or (["eager"] + (["triton"] if has_triton else []) + ["controller"] if cuda
                               else ["eager"])
    triton_version = __import__("triton").__version__ if has_triton else None
    print(f"gpu_check on {device} ({name}); torch {torch.__version__}, numpy {np.__version__}, "
          f"triton {triton_version}; step kernels {kernels}")
    report = {"device": device, "device_name": name, "torch": torch.__version__, "numpy": np.__version__,
              "triton": triton_version, "kernels": kernels, "checks": [], "bench": [], "errors": []}
    status = 0
    if not args.skip_stats:
        jobs = [(fn, dtype, kernel) for kernel in kernels if kernel != "controller"
                for fn in (gibbs_check, ou_check) for dtype in ("float32", "float64")]
        jobs += [(mfpt_check, "float32", kernel) for kernel in kernels if kernel != "controller"]
        for fn, dtype, kernel in jobs:
            t0 = time.perf_counter()
            try:
                r = fn(device, dtype, n_stat, kernel)
            except Exception as exc:          # report and go on: the table must come out whatever happens
                r = {"check": f"{fn.__name__} ({dtype}, {kernel})", "value": f"ERROR {type(exc).__name__}: {exc}"[:90],
                     "power": "", "passed": False, "error": traceback.format_exc()}
                status = max(status, 2)
            r["seconds"] = time.perf_counter() - t0
            if not r["passed"] and "error" not in r:
                status = max(status, 1)
            report["checks"].append(r)
    for n, kernel in [(n, k) for n in _sizes(device, args.walkers) for k in kernels]:
        try:
            why = _fits(device, n, kernel)
            if why is not None:
                report["bench"].append({"N": n, "kernel": kernel, "skipped": why})
                continue
            report["bench"].append(bench(device, n, block, args.rounds, kernel))
        except Exception as exc:
            report["bench"].append({"N": n, "kernel": kernel, "error": f"{type(exc).__name__}: {exc}"[:200],
                                    "traceback": traceback.format_exc()})
            status = max(status, 2)
    report["seconds"] = time.perf_counter() - t_start
    report["exit_status"] = status
    _print_table(report, block)
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gpu_check.json"), "w") as fh:
            json.dump(report, fh, indent=2, default=float)
        print(f"written {os.path.join(out, 'gpu_check.json')}")
    return status


def _print_table(report: dict, block: int) -> None:
    rows = []
    for c in report["checks"]:
        rows.append(("stat", c["check"], c["value"], c["power"], "PASS" if c["passed"] else "FAIL",
                     f"{c['seconds']:.1f} s"))
    for b in report["bench"]:
        label = f"engine N={b['N']:.0e} float32 {b.get('kernel', 'eager')}"
        if "skipped" in b:
            rows.append(("bench", label, "skipped", b["skipped"], "", ""))
        elif "error" in b:
            rows.append(("bench", label, "ERROR", b["error"][:60], "", ""))
        else:
            peak = "n/a" if b["peak_memory_bytes"] is None else f"{b['peak_memory_bytes'] / 2**30:.2f} GiB"
            rows.append(("bench", label, f"{b['walker_steps_per_s']:.3g} walker-steps/s",
                         f"{b['engine_over_randn']:.2f}× randn ({b['randn_walker_steps_per_s']:.3g}/s)",
                         f"peak {peak}", f"{b['engine_step_s'] * 1e3:.3f} ms/step"))
    widths = [max(len(str(r[i])) for r in rows + [("kind", "what", "result", "reference", "status", "time")])
              for i in range(6)]
    head = ("kind", "what", "result", "reference", "status", "time")
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    print(f"(bench: {block}-step blocks, median of the blocks, engine = Simulation.advance on the double well, "
          f"randn = torch.randn alone into the same buffer shape; total {report['seconds']:.1f} s; "
          f"exit status {report['exit_status']})")
    if report["exit_status"] == 2:
        for c in report["checks"] + report["bench"]:
            tb = c.get("error") if isinstance(c.get("error"), str) and "Traceback" in c.get("error", "") \
                else c.get("traceback")
            if tb:
                print(tb, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

