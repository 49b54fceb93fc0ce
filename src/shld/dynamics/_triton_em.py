"""The Triton source of :mod:`shld.dynamics.triton_steps`' kernel (imported only when it runs: the core
imports without Triton). A plain function: :func:`shld.dynamics.triton_steps._kernel` compiles it with
``triton.jit`` on CUDA or hands it to Triton's interpreter on CPU tensors (which cannot call other
``triton.jit`` functions, hence one body)."""

import triton.language as tl


def em_cubic_steps(x_ptr, coef_ptr, par_ptr, dt64_ptr, key_ptr, hit_ptr, fpt_ptr, sig_ptr, n, d, s0, s1, axis,
                   BLOCK: tl.constexpr, TARGET: tl.constexpr, ABOVE: tl.constexpr, PER_STEP: tl.constexpr):
    """θ ← θ − dt·g(θ) + σ·ξ for the steps s0 ≤ s < s1 of every flat element (module docstring of
    triton_steps). σ is one number (``par[1]``), or with ``PER_STEP`` σ_s = ``sig[s − s0]`` (a schedule
    D(t)). With ``TARGET``, the elements of coordinate ``axis`` also record their walker's first
    passage into θ_axis ≥ threshold (``ABOVE``; else ≤): ``hit`` (bool per walker) and ``fpt`` (float64
    per walker, (s + 1)·dt at the first step s after which the walker is inside)."""
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
    if TARGET:
        threshold = tl.load(par_ptr + 2)              # in the walkers' dtype, as the eager comparison
        dt64 = tl.load(dt64_ptr)                      # float64: first-passage times are (s + 1)·dt exactly
        watch = mask & (j == axis)
        walker = offs // d
        hit = tl.load(hit_ptr + walker, mask=watch, other=1) != 0     # other coordinates never record
        fpt = tl.load(fpt_ptr + walker, mask=watch, other=0.0)
    r01 = x.to(tl.float32) * 0.0
    r23 = r01
    t01 = r01
    t23 = r01
    for t in range(s0, s1):
        lane = t % 4
        if (lane == 0) | (t == s0):
            # Philox4x32-10 on the counter (e_lo, e_hi, g_lo, g_hi) of the group g = t div 4
            gg = tl.full(e_lo.shape, t // 4, tl.int64)
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
        if lane == 0:
            z = r01 * tl.cos(t01)
        elif lane == 1:
            z = r01 * tl.sin(t01)
        elif lane == 2:
            z = r23 * tl.cos(t23)
        else:
            z = r23 * tl.sin(t23)
        if PER_STEP:
            sigma_t = tl.load(sig_ptr + (t - s0))
        else:
            sigma_t = sigma
        x = x - dt * (((p3 * x + p2) * x + p1) * x + p0) + sigma_t * z
        if TARGET:
            if ABOVE:
                newly = (x >= threshold) & (~hit)
            else:
                newly = (x <= threshold) & (~hit)
            fpt = tl.where(newly, (t + 1) * dt64, fpt)
            hit = hit | newly
    tl.store(x_ptr + offs, x, mask=mask)
    if TARGET:
        tl.store(hit_ptr + walker, hit, mask=watch)
        tl.store(fpt_ptr + walker, fpt, mask=watch)
