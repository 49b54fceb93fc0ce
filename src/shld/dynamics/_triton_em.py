"""The Triton source of :mod:`shld.dynamics.triton_steps`' kernel (imported only when it runs: the core
imports without Triton). A plain function: :func:`shld.dynamics.triton_steps._kernel` compiles it with
``triton.jit`` on CUDA or hands it to Triton's interpreter on CPU tensors."""

import triton.language as tl


def em_cubic_steps(x_ptr, coef_ptr, par_ptr, key_ptr, n, d, s0, s1, BLOCK: tl.constexpr):
    """θ ← θ − dt·g(θ) + σ·ξ for the steps s0 ≤ s < s1 of every flat element (module docstring)."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    j = offs % d
    p0 = tl.load(coef_ptr + j * 4, mask=mask, other=0.0)
    p1 = tl.load(coef_ptr + j * 4 + 1, mask=mask, other=0.0)
    p2 = tl.load(coef_ptr + j * 4 + 2, mask=mask, other=0.0)
    p3 = tl.load(coef_ptr + j * 4 + 3, mask=mask, other=0.0)
    dt = tl.load(par_ptr)              # dt and σ in the walkers' dtype (a float64 run keeps its dt exact)
    sigma = tl.load(par_ptr + 1)
    key = tl.load(key_ptr).to(tl.uint64, bitcast=True)
    key_lo = (key & 0xFFFFFFFF).to(tl.uint32)
    key_hi = (key >> 32).to(tl.uint32)
    e_lo = offs.to(tl.uint32)
    e_hi = (offs >> 32).to(tl.uint32)
    for g in range(s0 // 4, (s1 + 3) // 4):
        # Philox4x32-10 on the counter (e_lo, e_hi, g_lo, g_hi)
        gg = tl.full(e_lo.shape, g, tl.int64)
        c0 = e_lo
        c1 = e_hi
        c2 = gg.to(tl.uint32)
        c3 = (gg >> 32).to(tl.uint32)
        k0 = key_lo
        k1 = key_hi
        for _ in tl.static_range(10):
            a0 = c0
            a2 = c2
            c0 = tl.umulhi(a2, 0xCD9E8D57) ^ c1 ^ k0
            c2 = tl.umulhi(a0, 0xD2511F53) ^ c3 ^ k1
            c1 = a2 * 0xCD9E8D57
            c3 = a0 * 0xD2511F53
            k0 = k0 + 0x9E3779B9
            k1 = k1 + 0xBB67AE85
        # Box–Muller: radius from (r + 1/2)·2^-32 ∈ (0, 1], angle 2π·r·2^-32
        r01 = tl.sqrt(-2.0 * tl.log((c0.to(tl.float32) + 0.5) * 2.3283064365386963e-10))
        r23 = tl.sqrt(-2.0 * tl.log((c2.to(tl.float32) + 0.5) * 2.3283064365386963e-10))
        t01 = c1.to(tl.float32) * 1.4629180792671596e-09
        t23 = c3.to(tl.float32) * 1.4629180792671596e-09
        t = g * 4
        if t >= s0:
            if t < s1:
                x = x - dt * (((p3 * x + p2) * x + p1) * x + p0) + sigma * (r01 * tl.cos(t01))
        if t + 1 >= s0:
            if t + 1 < s1:
                x = x - dt * (((p3 * x + p2) * x + p1) * x + p0) + sigma * (r01 * tl.sin(t01))
        if t + 2 >= s0:
            if t + 2 < s1:
                x = x - dt * (((p3 * x + p2) * x + p1) * x + p0) + sigma * (r23 * tl.cos(t23))
        if t + 3 >= s0:
            if t + 3 < s1:
                x = x - dt * (((p3 * x + p2) * x + p1) * x + p0) + sigma * (r23 * tl.sin(t23))
    tl.store(x_ptr + offs, x, mask=mask)
