"""Many Euler–Maruyama steps in one GPU kernel (Triton), for gradients that are a cubic per coordinate.

The eager torch step reads and writes θ, the gradient and the noise in separate passes (about 28 bytes
per walker per step in float32, against the 4 bytes ``torch.randn`` alone writes); on a GPU the step is
bound by memory, at ~6.6× the randn floor. This kernel keeps each walker's coordinate in a register for
``m`` steps, draws its normals in the kernel and writes θ once: 8 bytes per walker per launch, so the
cost per step is the cost of making the normals.

It applies when the landscape's gradient is separable and polynomial (its public
:meth:`shld.landscapes.base.Landscape.gradient_polynomial`): ∂L/∂θ_j = p_j0 + p_j1·θ_j + p_j2·θ_j² +
p_j3·θ_j³ (the double well, any diagonal quadratic), to the overdamped step

    θ_j ← θ_j − dt·g_j(θ_j) + σ·ξ,     σ = √(2·D·dt),   ξ ~ N(0, 1),

with D constant or given per step (a schedule D(t): σ_s = √(2·D(s·dt)·dt), passed with each launch), and
no preconditioner.

Noise: counter-based, so that the bits depend on (key, walker coordinate, step) alone and not on how the
steps are split into launches (a resumed run or a run advanced in pieces gives the same bits). The
normals of steps 4g … 4g+3 of flat element e come from one Philox4x32-10 block (Salmon et al. 2011)
with counter (e mod 2³², e div 2³², g mod 2³², g div 2³²) and the run's 64-bit key, through two
Box–Muller pairs: u = (r + ½)·2⁻³² ∈ (0, 1], so |ξ| ≤ 6.77. The
arithmetic of the normals is float32; the step runs in the walkers' dtype.

Without CUDA the same kernel runs in Triton's interpreter (numpy, on CPU tensors): slow, for tests.
"""

from __future__ import annotations

import contextlib
import math
from functools import lru_cache

import numpy as np

from shld.dynamics.targets import HalfSpace

#: Elements per program: compiled (a GPU block) and interpreted (numpy arrays; large, so that few
#: programs run one after another).
BLOCK_GPU = 1024
BLOCK_INTERPRETED = 1 << 16


def triton_available() -> bool:
    """Whether ``import triton`` works here (the kernel's only extra requirement)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:           # ImportError, or a broken install that fails while loading
        return False
    return True


@lru_cache(maxsize=1)
def interpreter_problem() -> str | None:
    """None when Triton's interpreter runs the kernel on CPU tensors here, else why not (it has broken
    with some Triton and numpy pairs: Triton 3.5's with numpy 2.4, for one). One step of one walker."""
    if not triton_available():
        return "Triton is not installed (pip install triton)"
    import torch
    import triton

    from shld.dynamics.backends import make_backend

    try:
        x = torch.zeros(1, 1)
        CubicEulerKernel(np.zeros((1, 4)), 1.0, 0.5, make_backend("torch", "float32", "cpu"))(
            x, torch.zeros(1, dtype=torch.int64), 0, 1)
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return (f"Triton {triton.__version__}'s interpreter does not run here with numpy {np.__version__} "
                f"({type(cause).__name__}: {cause})"[:300])
    return None


@lru_cache(maxsize=2)
def _kernel(interpret: bool):
    """The kernel, compiled by Triton (``interpret=False``) or run by its interpreter."""
    import triton

    from shld.dynamics._triton_em import em_cubic_steps

    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(em_cubic_steps)
    # the step range changes at every launch: one compiled kernel for all of them, not one per
    # divisibility class of s0 and s1
    return triton.jit(em_cubic_steps, do_not_specialize=["s0", "s1", "axis"])


class CubicEulerKernel:
    """``kernel(theta, key, s0, s1, hit=None, fpt=None, D=None)``: advance ``theta`` (torch, (N, d),
    C-contiguous) in place over the steps s0 ≤ s < s1 of a run with gradient coefficients
    ``coefficients`` ((d, 4): g_j = Σ_k c_jk θ_j^k), step ``dt`` and temperature ``D``; ``key`` is a
    one-element int64 tensor on θ's device. A kernel built with ``D=None`` follows a schedule: each call
    passes ``D``, the s1 − s0 temperatures of its steps. With ``target`` (a
    :class:`shld.dynamics.targets.HalfSpace`), ``hit`` (bool, (N,)) and ``fpt`` (float64, (N,)) are
    updated in place as the engine's eager loop does after each step: a walker not yet hit that is
    inside after step s gets fpt = (s + 1)·dt."""

    def __init__(self, coefficients, dt: float, D: float | None, backend, target=None):
        import torch

        coef = np.asarray(coefficients, dtype=np.float64)
        kw = dict(dtype=backend.dtype, device=backend.device)
        self.backend = backend
        self.coef = torch.as_tensor(np.ascontiguousarray(coef), **kw)
        self.dt = float(dt)
        self.per_step = D is None
        self.sigma = 0.0 if self.per_step else math.sqrt(2.0 * D * dt)
        self.d = coef.shape[0]
        self.target = None if target is None else target.halfspace()
        if self.target is not None and not 0 <= self.target[0] < self.d:
            raise ValueError(f"target axis {self.target[0]} is not a coordinate of θ (d = {self.d})")
        threshold = 0.0 if self.target is None else self.target[1]
        self.params = torch.tensor([self.dt, self.sigma, threshold], **kw)
        self.dt64 = torch.tensor([self.dt], dtype=torch.float64, device=backend.device)
        self.interpret = backend.device.type != "cuda"
        self.block = BLOCK_INTERPRETED if self.interpret else BLOCK_GPU
        self.launch = _kernel(self.interpret)
        # Triton launches on the current CUDA device: a run on "cuda:1" makes that device current
        self._on_device = (torch.cuda.device(backend.device) if not self.interpret
                           else contextlib.nullcontext())

    def new_key(self, gen):
        """A run's noise key: one int64 drawn from the run's generator ``gen``, on the kernel's device."""
        import torch

        return torch.empty(1, dtype=torch.int64, device=self.backend.device).random_(generator=gen)

    def sigmas(self, D):
        """σ_s = √(2·D_s·dt) of a launch's temperatures ``D`` (float64 arithmetic, as the constant σ), as a
        tensor in the walkers' dtype on the kernel's device."""
        import torch

        return torch.as_tensor(np.sqrt(2.0 * np.asarray(D, dtype=np.float64) * self.dt), dtype=self.coef.dtype,
                               device=self.backend.device)

    def __call__(self, theta, key, s0: int, s1: int, hit=None, fpt=None, D=None):
        if s1 <= s0:
            return theta
        if not theta.is_contiguous() or theta.dtype != self.coef.dtype or theta.shape[-1] != self.d:
            raise ValueError(f"`theta` must be a C-contiguous {self.coef.dtype} tensor of shape (N, {self.d}), "
                             f"got {theta.dtype} {tuple(theta.shape)} (contiguous: {theta.is_contiguous()})")
        has_target = self.target is not None
        if has_target and (hit is None or fpt is None):
            raise ValueError("a kernel with a target needs `hit` and `fpt`, the run's first-passage state")
        if self.per_step != (D is not None) or (D is not None and np.shape(D) != (s1 - s0,)):
            raise ValueError(f"this kernel takes {'the D of each of its s1 − s0 steps' if self.per_step else 'no D'}"
                             f" (built with D={'None' if self.per_step else 'a number'}); got D of shape "
                             f"{None if D is None else np.shape(D)} for {s1 - s0} steps")
        sig = self.sigmas(D) if self.per_step else self.params
        n = theta.numel()
        grid = (-(-n // self.block),)
        axis, above = (self.target[0], self.target[2]) if has_target else (0, True)
        try:
            with self._on_device:
                self.launch[grid](theta, self.coef, self.params, self.dt64, key,
                                  hit if has_target else theta, fpt if has_target else theta, sig,
                                  n, self.d, int(s0), int(s1), axis, BLOCK=self.block, TARGET=has_target,
                                  ABOVE=bool(above), PER_STEP=self.per_step,
                                  enable_fp_fusion=True)   # fused multiply-adds, asked for (Triton 3.9 warns if not)
        except Exception as exc:        # a compiler or driver failure: name the way round it
            raise RuntimeError(f"the many-steps Triton kernel failed on {theta.device} "
                               f"({type(exc).__name__}: {exc}); run with step_kernel='eager' to step "
                               "with torch operations instead") from exc
        return theta


def philox4x32_10(counter, key) -> np.ndarray:
    """Philox4x32-10 in numpy (the reference for the kernel's generator): ``counter`` (..., 4) and
    ``key`` (..., 2) as uint32, returns (..., 4) uint32. Known answers: Random123's kat_vectors."""
    c = np.array(counter, dtype=np.uint64) & 0xFFFFFFFF
    k = np.array(key, dtype=np.uint64) & 0xFFFFFFFF
    c0, c1, c2, c3 = (c[..., i] for i in range(4))
    k0, k1 = k[..., 0], k[..., 1]
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0 = c0 * np.uint64(0xD2511F53)
        p2 = c2 * np.uint64(0xCD9E8D57)
        c0, c1, c2, c3 = ((p2 >> np.uint64(32)) ^ c1 ^ k0, p2 & mask,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & mask)
        k0 = (k0 + np.uint64(0x9E3779B9)) & mask
        k1 = (k1 + np.uint64(0xBB67AE85)) & mask
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def reference_normals(key: int, n: int, step: int) -> np.ndarray:
    """The kernel's normal of flat elements 0 … n−1 at ``step``, in numpy float32: lane step mod 4 of the
    Philox block with counter (e, step div 4) and key ``key`` (its 64 bits, as the kernel reads them)."""
    key &= (1 << 64) - 1
    e = np.arange(n, dtype=np.uint64)
    g = np.uint64(step // 4)
    low = np.uint64(0xFFFFFFFF)
    counter = np.stack([e & low, e >> np.uint64(32), np.full(n, g & low), np.full(n, g >> np.uint64(32))], axis=1)
    r = philox4x32_10(counter, [key & 0xFFFFFFFF, key >> 32]).astype(np.float32)
    lane = step % 4
    u = (r[:, 2 * (lane // 2)] + np.float32(0.5)) * np.float32(2.3283064365386963e-10)
    angle = r[:, 2 * (lane // 2) + 1] * np.float32(1.4629180792671596e-09)
    radius = np.sqrt(np.float32(-2.0) * np.log(u))
    return radius * (np.cos(angle) if lane % 2 == 0 else np.sin(angle))


def reference_steps(coefficients, dt: float, D, theta, key: int, s0: int, s1: int) -> np.ndarray:
    """θ after the kernel's steps s0 ≤ s < s1, computed in float64 numpy from :func:`reference_normals`;
    ``D`` is a number or the s1 − s0 temperatures of the steps."""
    return reference_passage(coefficients, dt, D, theta, key, s0, s1)[0]


def reference_passage(coefficients, dt: float, D, theta, key: int, s0: int, s1: int, target=None,
                      hit=None, fpt=None) -> tuple:
    """(θ, hit, fpt) after the kernel's steps s0 ≤ s < s1 in float64 numpy, with the first passages into
    ``target`` (a HalfSpace, or None) recorded as the kernel and the eager loop record them: a walker not
    yet hit that is inside after step s gets fpt = (s + 1)·dt. ``hit``/``fpt`` start False/inf unless given."""
    c = np.asarray(coefficients, dtype=np.float64)
    x = np.array(theta, dtype=np.float64)
    n = x.shape[0]
    hit = np.zeros(n, bool) if hit is None else np.array(hit, bool)
    fpt = np.full(n, np.inf) if fpt is None else np.array(fpt, np.float64)
    sigma = np.sqrt(2.0 * np.broadcast_to(np.asarray(D, dtype=np.float64), (s1 - s0,)) * dt)
    for s in range(s0, s1):
        z = reference_normals(key, x.size, s).astype(np.float64).reshape(x.shape)
        x = x - dt * (((c[:, 3] * x + c[:, 2]) * x + c[:, 1]) * x + c[:, 0]) + sigma[s - s0] * z
        if target is not None:
            newly = target(x) & ~hit
            fpt[newly] = (s + 1) * dt
            hit |= newly
    return x, hit, fpt


#: (device, dtype, per-step D, target side) variants of the kernel that have passed
#: :func:`check_against_reference` in this process
_CHECKED: set = set()
#: the check's tolerance on θ (≈ 1): float32 rounding over a few steps and libdevice's log/cos/sin stay
#: below 1e-6; a wrong lane, counter or coefficient moves θ by ≥ 1e-3
CHECK_ATOL = 1e-5
#: the check's input: 16 walkers × 2 coordinates over steps 3 … 8 (a partial group of four steps, a
#: whole one, a partial one), a key with its top bit set (a negative int64), and for the variants that
#: need them a schedule's temperatures and a target crossed by some walkers. Its reference path keeps
#: every walker ≥ 1e-3 from the threshold (a test checks), so float32 rounding cannot flip a crossing.
PROBE = dict(coef=np.array([[0.1, -4.0, 0.0, 4.0], [0.0, 1.5, 0.0, 0.0]]),
             theta0=np.linspace(-1.5, 1.5, 32).reshape(16, 2), key=0x8123456789ABCDEF - (1 << 64), dt=1e-2,
             D=0.5, D_steps=np.array([0.5, 0.8, 0.05, 0.3, 1.2, 0.0]), s0=3, s1=9, threshold=0.33)


def _probe_target(above: bool):
    return HalfSpace(0, PROBE["threshold"] if above else -PROBE["threshold"], above=above)


def check_against_reference(kernel: CubicEulerKernel) -> None:
    """Run ``kernel``'s compiled code once on :data:`PROBE` against :func:`reference_passage` (θ within
    :data:`CHECK_ATOL`; with a target, the same hits and first-passage times bit for bit); raise
    ``RuntimeError`` with the remedy when they differ. Once per variant the run compiles (device, dtype,
    constant or per-step D, with or without a target) per process: the kernel is never trusted on hardware
    it has not been checked on."""
    import torch

    where = (str(kernel.coef.device), str(kernel.coef.dtype), kernel.per_step,
             None if kernel.target is None else kernel.target[2])
    if where in _CHECKED:
        return
    p = PROBE
    target = None if kernel.target is None else _probe_target(kernel.target[2])
    D = p["D_steps"] if kernel.per_step else p["D"]
    probe = CubicEulerKernel(p["coef"], p["dt"], None if kernel.per_step else D, kernel.backend, target=target)
    probe.launch = kernel.launch                                 # the very code the run will launch
    dev, n = kernel.coef.device, p["theta0"].shape[0]
    x = torch.tensor(p["theta0"], dtype=kernel.coef.dtype, device=dev)        # a copy: theta0 stays
    hit = torch.zeros(n, dtype=torch.bool, device=dev)
    fpt = torch.full((n,), math.inf, dtype=torch.float64, device=dev)
    probe(x, torch.tensor([p["key"]], dtype=torch.int64, device=dev), p["s0"], p["s1"], hit, fpt,
          D=D if kernel.per_step else None)
    x_ref, hit_ref, fpt_ref = reference_passage(p["coef"], p["dt"], D, p["theta0"], p["key"], p["s0"], p["s1"],
                                                target)
    err = float(np.max(np.abs(x.cpu().numpy().astype(np.float64) - x_ref)))
    passages_agree = target is None or (np.array_equal(hit.cpu().numpy(), hit_ref)
                                        and np.array_equal(fpt.cpu().numpy(), fpt_ref))
    if not (err <= CHECK_ATOL and passages_agree):
        import triton

        what = (f"off its numpy reference by {err:.3g} (> {CHECK_ATOL:g})" if not err <= CHECK_ATOL
                else "recording other first passages than its numpy reference")
        raise RuntimeError(f"the many-steps Triton kernel is {what} on {where[0]} ({where[1]}, Triton "
                           f"{triton.__version__}); its results cannot be trusted here: run with "
                           "step_kernel='eager', and please report this")
    _CHECKED.add(where)
