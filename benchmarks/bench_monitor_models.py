"""Cost of exact per-sample statistics on the models people train: SHLD's monitor next to Opacus and
BackPACK, side by side in one run.

    pip install --no-deps opacus opt_einsum backpack-for-pytorch einops unfoldNd   # peers, only for this
    python benchmarks/bench_monitor_models.py                # CPU, ~3–6 min on 2 idle cores
    python benchmarks/bench_monitor_models.py --threads 1 --clock process   # CPU time: robust to other load
    python benchmarks/bench_monitor_models.py --quick        # 3 rounds (< 3 min on a GPU)
    python benchmarks/bench_monitor_models.py --device cuda  # unchanged on a GPU

The table is printed as Markdown; with ``--json PATH`` (or the environment variable ``OUT`` set:
``$OUT/monitor_models.json``) it is also written as JSON, rewritten after each model so that an
interrupted run keeps what it measured.

Models (``shld.torch.models``, batch 64, float32, SGD): a ResNet-style CNN (grouped and depthwise
convolutions, BatchNorm in train mode, GroupNorm; 3×32×32), a vision transformer (patch 4 on 3×32×32
→ 64 tokens, d = 128, 4 heads, 2 ``nn.TransformerEncoderLayer`` blocks, dropout 0) and GPT-2 from a
``GPT2Config`` (2 layers, d = 128, 4 heads, vocabulary 512, T = 32; no weights downloaded).

Variants: a plain step; SHLD with the exact tr Σ every step (``schedule=1``); SHLD's default
schedule (every 10th step); Opacus ``GradSampleModule`` (exact per-sample gradients, tr Σ from them;
``ModuleValidator.fix`` first, which swaps BatchNorm for GroupNorm and ``nn.MultiheadAttention`` for
its ``DPMultiheadAttention`` — a different model, as Opacus requires); BackPACK ``BatchL2Grad``
(per-sample gradient norms) where it can extend the model. Steps run in blocks of 10; in each round
every variant's block runs next to a plain block (plain first in even rounds, second in odd ones),
and the figure is the median over rounds of the ratio within a pair (with its quartiles), so that load
which drifts hits both members of a pair alike
(CUDA: synchronised before each clock read); "s / step" is the median block time per step.
Memory: the peak of PyTorch's allocator over a 10-step block that begins on a tracked step, above what
was allocated when the block began (CPU: the running sum of the profiler's memory events; CUDA:
``max_memory_allocated() − memory_allocated()`` at the start), as a ratio to the plain step; the JSON
also holds what was live at the start (CUDA) and the static bytes (parameters, gradients, data).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from shld.torch import Monitor
from shld.torch.models import SmallResNet, TinyViT, tiny_gpt2

BLOCK, B = 10, 64


def ce(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


def lm(model, batch):
    ids = batch[0]
    out = model(ids)
    logits = (out.logits if hasattr(out, "logits") else out)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def models(device):
    g = torch.Generator().manual_seed(0)
    img = [(torch.randn(B, 3, 32, 32, generator=g), torch.randint(0, 10, (B,), generator=g)) for _ in range(BLOCK)]
    ids = [(torch.randint(0, 512, (B, 32), generator=g),) for _ in range(BLOCK)]
    to = (lambda data: [tuple(t.to(device) for t in b) for b in data])  # noqa: E731
    return {
        "resnet": (lambda: SmallResNet(cin=3, width=16, classes=10), ce, to(img)),
        "vit": (lambda: TinyViT(cin=3, size=32, patch=4, dim=128, heads=4, depth=2, classes=10), ce, to(img)),
        "gpt2": (lambda: tiny_gpt2(n_layer=2, n_embd=128, n_head=4, vocab_size=512, n_positions=32), lm, to(ids)),
    }


# -- variants: each builds a function run(batches) doing BLOCK steps ---------------------------------
def v_plain(model, loss, opt):
    def run(batches):
        for b in batches:
            opt.zero_grad()
            loss(model, b).backward()
            opt.step()
    return run


def v_shld(schedule):
    def make(model, loss, opt):
        mon = Monitor(model, opt, loss_fn=loss, schedule=schedule, events=None)

        def run(batches):
            for b in batches:
                opt.zero_grad()
                with mon.track(b):
                    loss(model, b).backward()
                opt.step()
        run.monitor = mon
        return run
    return make


def v_opacus(model, loss, opt):
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    device = next(model.parameters()).device
    fixed = ModuleValidator.fix(model).to(device)      # its replacement GroupNorms are built on the CPU
    gsm = GradSampleModule(fixed)
    opt = torch.optim.SGD(gsm.parameters(), lr=opt.param_groups[0]["lr"])

    def run(batches):
        for b in batches:
            opt.zero_grad()
            for p in gsm.parameters():
                p.grad_sample = None
            loss(gsm, b).backward()
            gs = [p.grad_sample.flatten(1) for p in gsm.parameters() if getattr(p, "grad_sample", None) is not None]
            g = torch.cat(gs, 1)
            n = g.shape[0]
            _ = ((g - g.mean(0)) ** 2).sum() / (n - 1)      # tr Σ from exact per-sample gradients
            opt.step()
    return run


def v_backpack(model, loss, opt):
    from backpack import backpack, extend
    from backpack.extensions import BatchL2Grad

    model = extend(model)
    lossf = extend(nn.CrossEntropyLoss())

    def run(batches):
        for b in batches:
            opt.zero_grad()
            with backpack(BatchL2Grad()):
                lossf(model(b[0]), b[1]).backward()
            opt.step()
    return run


VARIANTS = {"plain": v_plain, "SHLD exact every step": v_shld(1), "SHLD default (every 10)": v_shld(10),
            "Opacus GradSampleModule": v_opacus, "BackPACK BatchL2Grad": v_backpack}


def build(name, make_model, loss, variant, device):
    torch.manual_seed(0)
    model = make_model().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return VARIANTS[variant](model, loss, opt)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter


def timing(name, spec, device, rounds):
    make_model, loss, data = spec
    runs, notes = {}, {}
    for v in VARIANTS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = build(name, make_model, loss, v, device)
                r(data)                       # warm-up (also checks that the variant runs on the model)
            runs[v] = r
        except Exception as exc:              # a peer without a rule for a layer of this model
            notes[v] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
    times = {v: [] for v in runs}
    ratios = {v: [] for v in runs}

    def block(v):
        sync(device)
        t0 = CLOCK()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[v](data)
        sync(device)
        return (CLOCK() - t0) / BLOCK

    for r in range(rounds):
        for v in runs:
            if v == "plain":
                continue
            # a pair: load that drifts hits both alike; the order alternates, so that an effect of
            # coming first or second in a pair cancels in the median
            if r % 2:
                tv, tp = block(v), block("plain")
            else:
                tp, tv = block("plain"), block(v)
            times["plain"].append(tp)
            times[v].append(tv)
            ratios[v].append(tv / tp)
    med = {v: statistics.median(t) for v, t in times.items()}
    ratio = {v: _quartiles(r) for v, r in ratios.items() if r}
    fallback = {v: r.monitor.backend for v, r in runs.items() if hasattr(r, "monitor")}
    return med, ratio, notes, fallback


def _quartiles(xs):
    """(median, first quartile, third quartile) of the per-pair ratios."""
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return statistics.median(xs), q[0], q[2]


def peak_memory(name, spec, device, variants):
    """{variant: (peak MB above the start of a 10-step block, MB live at its start or None)}."""
    make_model, loss, data = spec
    out = {}
    for v in variants:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = build(name, make_model, loss, v, device)
            r(data)
            if hasattr(r, "monitor"):
                r.monitor.step = 0                      # the block begins with a tracked step
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                base = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                r(data)
                torch.cuda.synchronize(device)
                out[v] = ((torch.cuda.max_memory_allocated(device) - base) / 1e6, base / 1e6)
                continue
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                r(data)
        mem = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
        out[v] = (max(itertools.accumulate(e.nbytes() for e in mem), default=0) / 1e6, None)
    return out


def static_mb(spec, device):
    """Parameters and their gradients (float32) of the bare model, and the data of one block, in MB."""
    make_model, _, data = spec
    torch.manual_seed(0)
    n = sum(p.numel() * p.element_size() for p in make_model().parameters())
    return (2 * n + sum(t.numel() * t.element_size() for b in data for t in b)) / 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds instead of 7 (< 3 min on a GPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="process: this process's CPU time (CPU only; with --threads 1 it is robust to other "
                    "work on the machine)")
    ap.add_argument("--models", default="resnet,vit,gpt2", help="comma-separated subset")
    ap.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS)
                    + " (plain is always run)")
    ap.add_argument("--json", default=None, help="write the table as JSON here (default: $OUT/monitor_models.json "
                    "when OUT is set)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.clock == "process" and device.type != "cpu":
        ap.error("--clock process measures CPU time: use it with --device cpu")
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 7)
    path = args.json or (os.path.join(os.environ["OUT"], "monitor_models.json") if os.environ.get("OUT") else None)
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    info = {"torch": torch.__version__, "device": str(device), "hardware": hw, "threads": args.threads,
            "rounds": rounds, "clock": args.clock, "block": BLOCK, "batch": B, "quick": args.quick, "rows": []}
    print(f"torch {torch.__version__}, {hw}, device {device}, threads {args.threads}, {args.clock} clock, "
          f"{rounds} rounds of {BLOCK} steps, batch {B}\n")
    print("| model | variant | s / step | × plain (quartiles) | peak memory MB | × plain | note |")
    print("|---|---|---|---|---|---|---|")
    wanted = [m.strip() for m in args.models.split(",")]
    unknown = sorted(set(wanted) - {"resnet", "vit", "gpt2"})
    if unknown:
        ap.error(f"--models: unknown {unknown}; choose from resnet, vit, gpt2")
    if args.variants:
        keep = {"plain", *(v.strip() for v in args.variants.split(","))}
        unknown = keep - set(VARIANTS)
        if unknown:
            ap.error(f"unknown variants {sorted(unknown)}")
        for v in list(VARIANTS):
            if v not in keep:
                del VARIANTS[v]
    for name, spec in models(device).items():
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        try:
            med, ratio, notes, backend = timing(name, spec, device, rounds)
            mem = peak_memory(name, spec, device, list(med))
        except Exception as exc:                        # keep the other models' rows
            print(f"| {name} | (all) | — | — | — | — | failed: {type(exc).__name__}: {exc} |", flush=True)
            info["rows"].append({"model": name, "variant": None, "note": f"failed: {type(exc).__name__}: {exc}"})
            continue
        base_m = mem["plain"][0]
        static = static_mb(spec, device)
        for v in VARIANTS:
            row = {"model": name, "variant": v}
            if v in med:
                note = f"backend {backend[v]}" if v in backend else ""
                peak, live = mem[v]
                r, q1, q3 = ratio.get(v, (1.0, 1.0, 1.0))
                row.update(s_per_step=med[v], time_ratio=r, time_ratio_q1=q1, time_ratio_q3=q3, peak_mb=peak,
                           mem_ratio=peak / base_m if base_m else None, live_mb=live, static_mb=static, note=note)
                print(f"| {name} | {v} | {med[v]:.4g} | {r:.2f}× ({q1:.2f}–{q3:.2f}) | {peak:.1f} | "
                      f"{peak / base_m:.2f}× | {note} |", flush=True)
            else:
                row.update(note=f"cannot run: {notes[v]}")
                print(f"| {name} | {v} | — | — | — | — | cannot run: {notes[v]} |", flush=True)
            info["rows"].append(row)
        info.setdefault("seconds", {})[name] = time.perf_counter() - t0
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as fh:
                json.dump(info, fh, indent=1)
    if path:
        print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
