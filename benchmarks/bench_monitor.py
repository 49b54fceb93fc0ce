"""Cost of the SHLD monitor next to a plain training step, Cockpit, BackPACK and PyHessian.

    python benchmarks/bench_monitor.py                 # full run, prints a markdown report
    python benchmarks/bench_monitor.py --quick         # fewer blocks (smoke test)
    python benchmarks/bench_monitor.py --only lambda   # the λ_max accuracy tables alone

Models (CPU, float32): an MLP 784-256-256-10 at batch 128 and a small CNN (two 3×3 conv layers,
3×32×32 input) at batch 64, SGD, synthetic data labelled by a random teacher.

Timing: variants run *interleaved* in blocks of 10 steps (one block of each variant in turn, repeated),
so that machine load hits them alike; a block of 10 steps contains exactly one tracked step of the
default schedule. The table gives the median block time per step and its ratio to the plain step
measured in the same rounds.

Memory: peak bytes allocated by PyTorch during a 10-step window (torch.profiler memory events), plus
the bytes that live through it (parameters, data, optimizer state); ratio to the plain step.

λ_max: along a training run the monitor's warm-started Lanczos (the current rule: warm start from the
previous top Ritz cluster, ``lanczos_steps`` = 8 products, more — up to ``lanczos_cold_steps`` = 32 —
while the error estimate is above ``lanczos_accuracy`` = 1e-3; the products spent are reported) is
compared with a converged reference (cold Lanczos, 120 products) on the same batch; PyHessian's cold
power iteration with 20 products is measured at the same points.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import sys
import time
import warnings

import torch
from torch import nn

from shld.torch import Monitor
from shld.torch.curvature import HVP, lanczos

BLOCK = 10


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 8 * 8, 10))


MODELS = {"mlp": (mlp, (784,), 128), "cnn": (cnn, (3, 32, 32), 64)}


def make_data(shape, B, n_batches, seed):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(math.prod(shape), 10, generator=g)
    xs = [torch.randn(B, *shape, generator=g) for _ in range(n_batches)]
    ys = [(x.reshape(B, -1) @ teacher).argmax(1) for x in xs]
    return list(zip(xs, ys))


def ce(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


# ----------------------------------------------------------------------------------------------
# variants: each returns a function run_block(batches) that performs BLOCK training steps
# ----------------------------------------------------------------------------------------------
def v_plain(model, opt):
    def run(batches):
        for b in batches:
            opt.zero_grad()
            ce(model, b).backward()
            opt.step()
    return run


def v_monitor(model, opt, **kw):
    mon = Monitor(model, opt, loss_fn=ce, events=None, **kw)

    def run(batches):
        for b in batches:
            opt.zero_grad()
            with mon.track(b):
                ce(model, b).backward()
            opt.step()
    run.monitor = mon
    return run


def v_backpack_l2(model, opt):
    from backpack import backpack, extend
    from backpack.extensions import BatchL2Grad

    model = extend(model)
    lossf = extend(nn.CrossEntropyLoss())

    def run(batches):
        for b in batches:
            opt.zero_grad()
            loss = lossf(model(b[0]), b[1])
            with backpack(BatchL2Grad()):
                loss.backward()
            opt.step()
    return run


def v_cockpit(model, opt, preset="economy"):
    from backpack import extend
    from cockpit import Cockpit
    from cockpit.utils.configuration import configuration

    model = extend(model)
    lossf = extend(nn.CrossEntropyLoss())
    indiv = nn.CrossEntropyLoss(reduction="none")
    cp = Cockpit(model.parameters(), quantities=configuration(preset))
    state = {"step": 0}

    def run(batches):
        for b in batches:
            opt.zero_grad()
            out = model(b[0])
            loss = lossf(out, b[1])
            losses = indiv(out, b[1])
            with cp(state["step"], info={"batch_size": b[0].shape[0], "individual_losses": losses,
                                         "loss": loss, "optimizer": opt}):
                loss.backward(create_graph=cp.create_graph(state["step"]))
            opt.step()
            state["step"] += 1
    return run


def have(mod):
    try:
        __import__(mod)
        return True
    except Exception:
        return False


def timing(name, n_rounds, threads):
    torch.set_num_threads(threads)
    fn, shape, B = MODELS[name]
    data = make_data(shape, B, BLOCK * 4, seed=1)
    variants = {
        "plain step": lambda m, o: v_plain(m, o),
        "monitor default (norm trick, every 10)": lambda m, o: v_monitor(m, o, schedule=10),
        "monitor exact tr Σ every step": lambda m, o: v_monitor(m, o, schedule=1),
        "monitor every 10 + λ_max every 10 (≤8 HVP)": lambda m, o: v_monitor(
            m, o, schedule=10, curvature_schedule=10, lanczos_steps=8, curvature_batch=data[-1]),
        "monitor microbatch k=4, every 10": lambda m, o: v_monitor(m, o, schedule=10, backend="microbatch"),
    }
    if have("backpack"):
        variants["BackPACK BatchL2Grad every step"] = lambda m, o: v_backpack_l2(m, o)
    if have("cockpit"):
        variants["Cockpit economy (every step)"] = lambda m, o: v_cockpit(m, o)
    runs = {}
    for k, make in variants.items():
        torch.manual_seed(0)
        m = fn()
        o = torch.optim.SGD(m.parameters(), lr=0.01)
        runs[k] = make(m, o)
        runs[k](data[:BLOCK])  # warm-up
    slow = {k for k in runs if k.startswith("Cockpit")}
    times = {k: [] for k in runs}
    for r in range(n_rounds):
        for k, run in runs.items():
            if k in slow and r >= max(2, n_rounds // 10):
                continue
            batches = data[(r % 4) * BLOCK:(r % 4 + 1) * BLOCK]
            t0 = time.perf_counter()
            run(batches)
            times[k].append((time.perf_counter() - t0) / BLOCK)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    base, base_best = med["plain step"], best["plain step"]
    return {k: {"ms": 1e3 * med[k], "ratio": med[k] / base, "best_ratio": best[k] / base_best,
                "blocks": len(times[k])} for k in med}


def peak_memory(name):
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    fn, shape, B = MODELS[name]
    data = make_data(shape, B, BLOCK, seed=2)
    out = {}
    for label, make in (("plain step", v_plain),
                        ("monitor default (norm trick, every 10)", lambda m, o: v_monitor(m, o, schedule=10)),
                        ("monitor exact tr Σ every step", lambda m, o: v_monitor(m, o, schedule=1))):
        torch.manual_seed(0)
        m = fn()
        o = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        run = make(m, o)
        run(data)  # optimizer state exists
        o.zero_grad()
        static = sum(p.numel() * p.element_size() for p in m.parameters())
        static += sum(t.numel() * t.element_size() for b in data for t in b)
        static += sum(v.numel() * v.element_size() for s in o.state.values() for v in s.values()
                      if torch.is_tensor(v))
        if hasattr(run, "monitor"):
            run.monitor.step = 0  # the window starts with a tracked step
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                run(data)
        mem = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
        transient = max(itertools.accumulate(e.nbytes() for e in mem), default=0)
        out[label] = {"static_MB": static / 1e6, "transient_MB": transient / 1e6,
                      "total_MB": (static + transient) / 1e6}
    base = out["plain step"]["total_MB"]
    for v in out.values():
        v["ratio"] = v["total_MB"] / base
    return out


def lambda_accuracy(name, n_points, threads):
    """Warm-started monitor Lanczos (8 products, more while above the accuracy) vs a converged reference
    along a training run."""
    torch.set_num_threads(threads)
    fn, shape, B = MODELS[name]
    data = make_data(shape, B, 10 * n_points + 1, seed=3)
    fixed = data.pop()  # the curvature batch (held fixed, so the warm start pays off)
    torch.manual_seed(0)
    model = fn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = Monitor(model, opt, loss_fn=ce, schedule=10, curvature_schedule=10, lanczos_steps=8,
                  lanczos_tol=1e-6, events=None, curvature_batch=fixed)
    mon_own = Monitor(model, opt, loss_fn=ce, schedule=10, curvature_schedule=10, lanczos_steps=8,
                      lanczos_tol=1e-6, events=None)
    rows = []
    gen = torch.Generator().manual_seed(5)
    pyh = have("pyhessian")
    for i, b in enumerate(data):
        opt.zero_grad()
        with mon.track(b), mon_own.track(b):
            ce(model, b).backward()
        rec = mon.records[-1] if mon.records and mon.records[-1]["step"] == i else None
        if rec is not None:
            own = mon_own.records[-1]
            hvp_own = HVP(model, ce, b)
            ref_own, _, _ = lanczos(hvp_own, torch.randn(hvp_own.dim, generator=gen), max_iter=120, tol=1e-12)
            b = fixed
            hvp = HVP(model, ce, b)
            v0 = torch.randn(hvp.dim, generator=gen)
            ref, _, info = lanczos(hvp, v0, max_iter=120, tol=1e-12)
            row = {"step": i, "ref": ref, "ref_residual_rel": info["residual"] / abs(ref),
                   "monitor": rec["lambda_max"], "monitor_products": rec["n_hvp"] - 1,
                   "monitor_rel_err": abs(rec["lambda_max"] - ref) / abs(ref)}
            hvp8 = HVP(model, ce, b)
            cold8, _, _ = lanczos(hvp8, torch.randn(hvp8.dim, generator=gen), max_iter=8, tol=1e-12)
            row["cold8_rel_err"] = abs(cold8 - ref) / abs(ref)
            row["own_batch_rel_err"] = abs(own["lambda_max"] - ref_own) / abs(ref_own)
            row["own_batch_products"] = own["lambda_max_products"]
            if pyh:
                row.update(_pyhessian(model, b, ref))
            rows.append(row)
        opt.step()
    return rows


def _pyhessian(model, batch, ref):
    import copy

    from pyhessian import hessian as pyh_hessian

    model = copy.deepcopy(model)  # PyHessian writes .grad and switches modes: keep it off the run
    was_training = model.training
    state = torch.get_rng_state()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    h = pyh_hessian(model, nn.CrossEntropyLoss(), data=batch, cuda=False)
    eig, _ = h.eigenvalues(maxIter=20, tol=1e-12, top_n=1)
    dt = time.perf_counter() - t0
    left_eval = not model.training
    torch.set_rng_state(state)
    return {"pyhessian20_rel_err": abs(eig[0] - ref) / abs(ref), "pyhessian20_s": dt,
            "pyhessian_switched_to_eval": was_training and left_eval}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write all results to this file")
    ap.add_argument("--only", choices=("all", "lambda"), default="all", help="lambda: the λ_max tables alone")
    args = ap.parse_args(argv)
    rounds = 6 if args.quick else 40
    points = 3 if args.quick else 10
    res = {"env": {"torch": torch.__version__, "python": platform.python_version(),
                   "machine": platform.machine(), "threads": args.threads,
                   "peers": {p: have(p) for p in ("backpack", "cockpit", "pyhessian")}},
           "timing": {}, "memory": {}, "lambda": {}}
    for name in MODELS:
        if args.only == "all":
            res["timing"][name] = timing(name, rounds, args.threads)
            res["memory"][name] = peak_memory(name)
        res["lambda"][name] = lambda_accuracy(name, points, args.threads)
    print(report(res, " ".join(["python", "benchmarks/bench_monitor.py", *(argv or sys.argv[1:])])))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


def report(res, cmd):
    lines = [f"Command: `{cmd}` (torch {res['env']['torch']}, {res['env']['threads']} thread(s); peers "
             f"installed: {', '.join(k for k, v in res['env']['peers'].items() if v) or 'none'})", ""]
    for name in MODELS:
        lines.append(f"**{name}**")
        if name in res["timing"]:
            lines += ["", f"median time per step (blocks of {BLOCK}, interleaved)", "",
                      "| variant | ms/step (median) | ratio to plain (median) | ratio of fastest blocks | blocks |",
                      "|---|---:|---:|---:|---:|"]
            for k, v in res["timing"][name].items():
                lines.append(f"| {k} | {v['ms']:.2f} | {v['ratio']:.2f}× | {v['best_ratio']:.2f}× | {v['blocks']} |")
        if name in res["memory"]:
            lines += ["", "| memory (10-step window) | static MB | transient peak MB | total MB | ratio |",
                      "|---|---:|---:|---:|---:|"]
            for k, v in res["memory"][name].items():
                lines.append(f"| {k} | {v['static_MB']:.2f} | {v['transient_MB']:.2f} | {v['total_MB']:.2f} "
                             f"| {v['ratio']:.2f}× |")
        rows = res["lambda"][name]
        if rows:
            def med(key, rows=rows):
                vals = [r[key] for r in rows if key in r]
                return statistics.median(vals) if vals else float("nan")

            def mx(key, rows=rows):
                vals = [r[key] for r in rows if key in r]
                return max(vals) if vals else float("nan")
            lines += ["", f"λ_max along training ({len(rows)} curvature steps every 10 steps, on a fixed "
                      "curvature batch; reference: cold Lanczos with 120 products)", "",
                      "| method | products | median rel. error | max rel. error |", "|---|---:|---:|---:|",
                      f"| monitor, warm-started Lanczos (calls 2–{len(rows)}) | "
                      f"≤{max(r['monitor_products'] for r in rows[1:])} "
                      f"(median {med('monitor_products', rows[1:]):.0f}) | {med('monitor_rel_err', rows[1:]):.1e} "
                      f"| {mx('monitor_rel_err', rows[1:]):.1e} |",
                      f"| monitor, first call (cold) | {rows[0]['monitor_products']} | "
                      f"{rows[0]['monitor_rel_err']:.1e} | – |",
                      f"| cold Lanczos | 8 | {med('cold8_rel_err'):.1e} | {mx('cold8_rel_err'):.1e} |",
                      f"| monitor, warm-started, on each step's own batch (calls 2–{len(rows)}) | "
                      f"≤{max(r['own_batch_products'] for r in rows[1:])} "
                      f"(median {med('own_batch_products', rows[1:]):.0f}) | "
                      f"{med('own_batch_rel_err', rows[1:]):.1e} | {mx('own_batch_rel_err', rows[1:]):.1e} |",
                      "", f"Warm calls within 1e-3 of the reference: "
                      f"{sum(r['monitor_rel_err'] <= 1e-3 for r in rows[1:])} of {len(rows) - 1}."]
            if "pyhessian20_rel_err" in rows[0]:
                lines.append(f"| PyHessian power iteration (cold) | 20 | {med('pyhessian20_rel_err'):.1e} | "
                             f"{mx('pyhessian20_rel_err'):.1e} |")
                lines.append("")
                lines.append(f"PyHessian left the model in eval mode: "
                             f"{all(r['pyhessian_switched_to_eval'] for r in rows)}; median time per call "
                             f"{med('pyhessian20_s') * 1e3:.0f} ms.")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
