"""Cost of exact per-sample statistics on the models people train: SHLD's monitor next to Opacus and
BackPACK, side by side in one run.

    pip install --no-deps opacus opt_einsum backpack-for-pytorch einops unfoldNd   # peers, only for this
    python benchmarks/bench_monitor_models.py                # CPU, ~3–6 min on 2 busy cores
    python benchmarks/bench_monitor_models.py --quick        # fewer rounds
    python benchmarks/bench_monitor_models.py --device cuda  # unchanged on a GPU

Models (``shld.torch.models``, batch 64, float32, SGD): a ResNet-style CNN (grouped and depthwise
convolutions, BatchNorm in train mode, GroupNorm; 3×32×32), a vision transformer (patch 4 on 3×32×32
→ 64 tokens, d = 128, 4 heads, 2 ``nn.TransformerEncoderLayer`` blocks, dropout 0) and GPT-2 from a
``GPT2Config`` (2 layers, d = 128, 4 heads, vocabulary 512, T = 32; no weights downloaded).

Variants: a plain step; SHLD with the exact tr Σ every step (``schedule=1``); SHLD's default
schedule (every 10th step); Opacus ``GradSampleModule`` (exact per-sample gradients, tr Σ from them;
``ModuleValidator.fix`` first, which swaps BatchNorm for GroupNorm and ``nn.MultiheadAttention`` for
its ``DPMultiheadAttention`` — a different model, as Opacus requires); BackPACK ``BatchL2Grad``
(per-sample gradient norms) where it can extend the model. Steps run in blocks of 10, the variants
interleaved so that machine load hits them alike; the figure is the median block time per step over
rounds, as a ratio to the plain step of the same rounds. Memory: the peak of PyTorch's allocator over
a 10-step block (CPU: profiler memory events; CUDA: ``max_memory_allocated``) plus what lives through
it, as a ratio to the plain step.
"""

from __future__ import annotations

import argparse
import itertools
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

    fixed = ModuleValidator.fix(model)
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
        torch.cuda.synchronize()


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
    for _ in range(rounds):
        for v, r in runs.items():
            sync(device)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r(data)
            sync(device)
            times[v].append((time.perf_counter() - t0) / BLOCK)
    med = {v: statistics.median(t) for v, t in times.items()}
    fallback = {v: r.monitor.backend for v, r in runs.items() if hasattr(r, "monitor")}
    return med, notes, fallback


def peak_memory(name, spec, device, variants):
    make_model, loss, data = spec
    out = {}
    for v in variants:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = build(name, make_model, loss, v, device)
            r(data)
            if hasattr(r, "monitor"):
                r.monitor.step = 0
            if device.type == "cuda":
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                r(data)
                torch.cuda.synchronize()
                out[v] = torch.cuda.max_memory_allocated() / 1e6
                out[v + " (live)"] = base / 1e6
                continue
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                r(data)
        mem = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
        out[v] = max(itertools.accumulate(e.nbytes() for e in mem), default=0) / 1e6
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 7
    print(f"torch {torch.__version__}, {platform.machine()}, device {device}, threads {args.threads}, "
          f"{rounds} rounds of {BLOCK} steps, batch {B}\n")
    print("| model | variant | s / step | × plain | peak memory MB | × plain | note |")
    print("|---|---|---|---|---|---|---|")
    for name, spec in models(device).items():
        med, notes, backend = timing(name, spec, device, rounds)
        mem = peak_memory(name, spec, device, list(med))
        base_t, base_m = med["plain"], mem["plain"]
        for v in VARIANTS:
            if v in med:
                note = f"backend {backend[v]}" if v in backend else ""
                print(f"| {name} | {v} | {med[v]:.4g} | {med[v] / base_t:.2f}× | {mem[v]:.1f} | "
                      f"{mem[v] / base_m:.2f}× | {note} |", flush=True)
            else:
                print(f"| {name} | {v} | — | — | — | — | cannot run: {notes[v]} |", flush=True)


if __name__ == "__main__":
    main()
