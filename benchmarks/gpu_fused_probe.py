"""Probe: how close can a fused Euler–Maruyama step get to the ``torch.randn`` floor on a GPU?

    python benchmarks/gpu_fused_probe.py            # cuda only; prints one table

The engine's eager torch step moves ~28 bytes per walker per step (gradient, two axpys, the noise
buffer); ``torch.randn`` alone writes 4. This probe times, at 10⁸ float32 walkers on the double well
U = (x² − 1)², (a) randn alone into a buffer, (b) the eager step θ ← θ − dt·4x(x² − 1) + σ·ξ with ξ from
randn, (c) the same step under ``torch.compile`` (one fused kernel reading θ and ξ, writing θ), (d) the
compiled step drawing its own noise with ``torch.randn_like`` inside the compiled function, so that the
noise never touches memory, (e) that step returning a new tensor instead of copying into θ (one read, one
write per walker). Ratios are against (a), medians of timed blocks, synchronised.
"""

import sys
import time

import torch


def timed(fn, steps, rounds=5):
    out = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) / steps)
    return sorted(out)[len(out) // 2]


def main(argv=None):
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False).parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to probe")
        return 0
    n, dt, D = 10**8, 1e-3, 0.5
    sigma = (2 * D * dt) ** 0.5
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.full((n,), -1.0, device="cuda")
    xi = torch.empty_like(x)

    def randn_only():
        torch.randn(xi.shape, generator=g, out=xi, device="cuda")

    def eager():
        torch.randn(xi.shape, generator=g, out=xi, device="cuda")
        x.add_(x * (x * x - 1.0), alpha=-4.0 * dt).add_(xi, alpha=sigma)

    @torch.compile(fullgraph=True)
    def fused(x, xi):
        return x - (4.0 * dt) * x * (x * x - 1.0) + sigma * xi

    def compiled():
        torch.randn(xi.shape, generator=g, out=xi, device="cuda")
        x.copy_(fused(x, xi))

    @torch.compile(fullgraph=True)
    def fused_noise(x):
        return x - (4.0 * dt) * x * (x * x - 1.0) + sigma * torch.randn_like(x)

    def compiled_noise():
        x.copy_(fused_noise(x))

    state = {"x": x.clone()}

    def compiled_noise_nocopy():
        state["x"] = fused_noise(state["x"])     # rebinding: no extra copy pass

    rows = []
    base = None
    for name, fn in (("randn alone", randn_only), ("eager step", eager), ("compiled step (randn + fused)", compiled),
                     ("compiled step, noise inside", compiled_noise),
                     ("compiled, noise inside, no copy", compiled_noise_nocopy)):
        for _ in range(3):
            fn()                      # warm-up (and compilation)
        t = timed(fn, 50)
        base = base or t
        rows.append((name, t, n / t, t / base))
    print(f"{'variant':32s} {'ms/step':>9s} {'walker-steps/s':>15s} {'x randn':>8s}")
    for name, t, rate, r in rows:
        print(f"{name:32s} {t * 1e3:9.3f} {rate:15.3e} {r:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
