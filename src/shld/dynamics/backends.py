"""Array backends of the Langevin engine: the few array operations the driver needs, on numpy or torch.

One driver (:mod:`shld.dynamics.simulate`) runs on any backend; a backend owns its arrays (walkers
``(N, d)`` and per-walker vectors ``(N,)``), its random generator and the handful of operations the
loop, the integrators and the records use:

=====================  ===========================================================================
``randn_(out, gen)``   standard normals into ``out`` (in place, explicit generator)
``axpy_(y, x, a)``     y ← y + a·x in place (numpy: BLAS axpy, one rounding; torch: ``add_(alpha=a)``)
``rowsum_sq(x, out)``  ‖x_i‖² per row
``where(m, x, fill)``  x where m, else a scalar
reductions             ``sum``, ``mean_std``, ``median``, ``mean0``/``var0`` (per coordinate)
transfers              ``asarray`` (numpy → backend), ``to_numpy`` (backend → numpy)
=====================  ===========================================================================

Backends: ``"numpy"`` (float32/float64, CPU, a ``numpy.random.Generator``; the engine's reference)
and ``"torch"`` (float32/float64 on ``"cpu"`` or ``"cuda"``, a ``torch.Generator`` on that device).

Seeds: the package's one rule (:mod:`shld.seeds`). A run seed (int or ``numpy.random.SeedSequence``)
seeds numpy's PCG64 directly; a torch generator is seeded with :func:`shld.seeds.torch_seed` of the
same seed sequence; chunks of walkers get the children ``SeedSequence(seed).spawn(k)``. The two
backends' streams differ, so their results agree in distribution, not in bits; within one backend,
dtype and device, the same seed gives the same bits on the same machine.
"""

from __future__ import annotations

import math

import numpy as np

from shld._validation import check_choice
from shld.seeds import torch_seed

BACKENDS = ("numpy", "torch")


class NumpyBackend:
    """numpy arrays on the CPU; the reference backend (its bits are the engine's historical bits)."""

    name = "numpy"
    device = "cpu"

    def __init__(self, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.dtype_name = self.dtype.name
        self.itemsize = self.dtype.itemsize

    def __repr__(self):
        return f"NumpyBackend({self.dtype_name})"

    # -- arrays --------------------------------------------------------------------
    def is_array(self, x) -> bool:
        return isinstance(x, np.ndarray)

    def asarray(self, x, kind: str | None = None):
        """A C-contiguous copy of ``x`` in this backend (``kind`` a dtype name; default: the float dtype)."""
        return np.array(x, dtype=self.dtype if kind is None else np.dtype(kind), order="C", copy=True)

    def full(self, n: int, value, kind: str):
        return np.full(n, value, dtype=np.dtype(kind))

    def empty_like(self, x):
        return np.empty_like(x)

    def copy(self, x):
        return x.copy()

    def to_numpy(self, x) -> np.ndarray:
        return x

    def to_numpy_copy(self, x) -> np.ndarray:
        """A numpy array that owns its data (a copy)."""
        return x.copy()

    # -- randomness ----------------------------------------------------------------
    def generator(self, rng=None, seed=None):
        from shld._validation import as_generator

        if rng is not None and not isinstance(rng, (np.random.Generator, int, np.integer,
                                                    np.random.SeedSequence)):
            raise TypeError(f"`rng` for backend='numpy' must be a numpy.random.Generator, an int seed or "
                            f"None, got {type(rng).__name__}")
        return as_generator(rng, seed)

    def randn_(self, out, gen):
        gen.standard_normal(out=out, dtype=self.dtype)

    def randn(self, shape, gen):
        return gen.standard_normal(shape, dtype=self.dtype)

    def generator_state(self, gen) -> dict:
        import json

        return {"rng_state": np.array(json.dumps(gen.bit_generator.state)),
                "rng_kind": np.array(type(gen.bit_generator).__name__)}

    # -- arithmetic ----------------------------------------------------------------
    def axpy_(self, y, x, a: float) -> None:
        """y ← y + a·x in place: BLAS axpy (one fused rounding) in single-threaded slices."""
        axpy = _AXPY.get(y.dtype.type)
        if axpy is None or not (y.flags.c_contiguous and x.flags.c_contiguous) or x.dtype != y.dtype:
            y += a * x
            return
        fy, fx = y.reshape(-1), x.reshape(-1)
        if fy.shape[0] <= _AXPY_CHUNK:
            axpy(fx, fy, a=a)
            return
        for i in range(0, fy.shape[0], _AXPY_CHUNK):
            j = i + _AXPY_CHUNK
            axpy(fx[i:j], fy[i:j], a=a)

    def axpy2_(self, y, x1, a1: float, x2, a2: float) -> None:
        """y ← y + a1·x1, then y ← y + a2·x2 (two fused roundings per element, as two :meth:`axpy_`),
        slice by slice so that each slice of y is still in cache for the second update."""
        axpy = _AXPY.get(y.dtype.type)
        if axpy is None or not (y.flags.c_contiguous and x1.flags.c_contiguous and x2.flags.c_contiguous) \
                or x1.dtype != y.dtype or x2.dtype != y.dtype:
            self.axpy_(y, x1, a1)
            self.axpy_(y, x2, a2)
            return
        fy, f1, f2 = y.reshape(-1), x1.reshape(-1), x2.reshape(-1)
        if fy.shape[0] <= _AXPY_CHUNK:
            axpy(f1, fy, a=a1)
            axpy(f2, fy, a=a2)
            return
        for i in range(0, fy.shape[0], _AXPY_CHUNK):
            j = i + _AXPY_CHUNK
            axpy(f1[i:j], fy[i:j], a=a1)
            axpy(f2[i:j], fy[i:j], a=a2)

    def axpy2_plan(self, y, x1, x2):
        """``f(a1, a2)`` doing :meth:`axpy2_` ``(y, x1, a1, x2, a2)`` on these three arrays, with the
        BLAS routine, flat views and slices found once (the same calls, so the same bits)."""
        axpy = _AXPY.get(y.dtype.type)
        if axpy is None or not (y.flags.c_contiguous and x1.flags.c_contiguous and x2.flags.c_contiguous) \
                or x1.dtype != y.dtype or x2.dtype != y.dtype:
            return lambda a1, a2: self.axpy2_(y, x1, a1, x2, a2)
        fy, f1, f2 = y.reshape(-1), x1.reshape(-1), x2.reshape(-1)
        if fy.shape[0] <= _AXPY_CHUNK:
            def run(a1, a2):
                axpy(f1, fy, a=a1)
                axpy(f2, fy, a=a2)
            return run
        parts = [(f1[i:i + _AXPY_CHUNK], f2[i:i + _AXPY_CHUNK], fy[i:i + _AXPY_CHUNK])
                 for i in range(0, fy.shape[0], _AXPY_CHUNK)]

        def run_sliced(a1, a2):
            for p1, p2, py in parts:
                axpy(p1, py, a=a1)
                axpy(p2, py, a=a2)
        return run_sliced

    def sqrt(self, x):
        return np.sqrt(x)

    def rowsum_sq(self, x, out):
        np.einsum("ij,ij->i", x, x, out=out)
        return out

    def finite_rows(self, x):
        return np.isfinite(x).all(axis=1)

    def isfinite(self, x):
        return np.isfinite(x)

    def any(self, mask) -> bool:
        return bool(mask.any())

    def all(self, mask) -> bool:
        return bool(mask.all())

    def count(self, mask) -> int:
        return int(np.count_nonzero(mask))

    def flatnonzero(self, mask) -> np.ndarray:
        return np.flatnonzero(mask)

    def index(self, idx):
        """Host indices (numpy int array) usable to index this backend's arrays."""
        return idx

    def where(self, mask, x, fill: float):
        """x where mask, else the scalar ``fill`` (a new array)."""
        return np.where(mask, x, fill)

    def sum(self, x):
        return np.add.reduce(x)

    def max(self, x) -> float:
        """The largest value as a Python float (x non-empty)."""
        return float(np.max(x))

    def scalar(self, x) -> float:
        return float(x)

    def mean_std(self, x, total, scratch):
        return _mean_std(x, total, scratch)

    def median(self, x, scratch) -> float:
        return _median(x, scratch)

    def fraction(self, mask) -> float:
        return float(np.mean(mask))

    def mean0(self, x) -> np.ndarray:
        return x.mean(axis=0)

    def var0(self, x) -> np.ndarray:
        return x.var(axis=0)

    def available_memory(self) -> int | None:
        """None: host memory, read by :func:`shld._validation.check_memory` itself."""
        return None

    def synchronize(self) -> None:
        return None


class TorchBackend:
    """torch tensors on ``device`` ("cpu", "cuda", "cuda:1", ...), float32 or float64."""

    name = "torch"

    def __init__(self, dtype="float64", device=None):
        import torch

        self.torch = torch
        name = _dtype_name(dtype)
        check_choice("dtype", name, ["float32", "float64"])
        self.dtype = getattr(torch, name)
        self.dtype_name = name
        self.itemsize = 4 if name == "float32" else 8
        dev = torch.device("cpu" if device is None else device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"`device`={str(device)!r} needs CUDA, but torch.cuda.is_available() is False "
                             "on this machine; use device='cpu'")
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"`device` must be 'cpu' or 'cuda' (optionally 'cuda:<index>'), got {device!r}")
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self._kinds = {"bool": torch.bool, "int8": torch.int8, "int64": torch.int64,
                       "float64": torch.float64, "float32": torch.float32}

    def __repr__(self):
        return f"TorchBackend({self.dtype_name}, {self.device})"

    def __reduce__(self):                 # picklable (for executors): rebuilt from its dtype and device
        return (TorchBackend, (self.dtype_name, str(self.device)))

    # -- arrays --------------------------------------------------------------------
    def is_array(self, x) -> bool:
        return isinstance(x, self.torch.Tensor)

    def asarray(self, x, kind: str | None = None):
        dtype = self.dtype if kind is None else self._kinds[kind]
        if isinstance(x, self.torch.Tensor):
            return x.detach().to(device=self.device, dtype=dtype, copy=True).contiguous()
        return self.torch.tensor(np.ascontiguousarray(x), dtype=dtype, device=self.device)

    def full(self, n: int, value, kind: str):
        return self.torch.full((n,), value, dtype=self._kinds[kind], device=self.device)

    def empty_like(self, x):
        return self.torch.empty_like(x)

    def copy(self, x):
        return x.clone()

    def to_numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def to_numpy_copy(self, x) -> np.ndarray:
        """A numpy array that owns its data: one device-to-host copy (a CPU tensor is copied once)."""
        x = x.detach()
        return x.numpy().copy() if x.device.type == "cpu" else x.cpu().numpy()

    # -- randomness ----------------------------------------------------------------
    def generator(self, rng=None, seed=None):
        """A ``torch.Generator`` on this device: ``rng`` itself when it is one (on this device), else
        seeded by :func:`shld.seeds.torch_seed` from ``rng`` (int / SeedSequence / numpy Generator: one draw) or
        ``seed``."""
        torch = self.torch
        src = rng if rng is not None else seed
        if isinstance(src, torch.Generator):
            if torch.device(src.device).type != self.device.type:
                raise ValueError(f"`rng` is a torch.Generator on {src.device}, but the run is on "
                                 f"{self.device}; make it with torch.Generator(device={str(self.device)!r})")
            return src
        if isinstance(src, np.random.Generator):
            src = int(src.integers(0, 2**63))
        elif not (src is None or isinstance(src, (int, np.integer, np.random.SeedSequence))
                  and not isinstance(src, bool)):
            raise TypeError(f"`rng` for backend='torch' must be a torch.Generator, a numpy Generator, an "
                            f"int seed, a SeedSequence or None, got {type(src).__name__}")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(torch_seed(src))          # src None: fresh entropy, as numpy's default_rng(None)
        return gen

    def randn_(self, out, gen):
        self.torch.randn(out.shape, generator=gen, dtype=out.dtype, device=out.device, out=out)

    def normal_(self, out, gen, std: float):
        """N(0, std²) into ``out`` in one pass (the same cost as standard normals)."""
        out.normal_(0.0, std, generator=gen)

    def randn(self, shape, gen):
        return self.torch.randn(shape, generator=gen, dtype=self.dtype, device=self.device)

    def generator_state(self, gen) -> dict:
        return {"rng_state": gen.get_state().numpy().copy(), "rng_kind": np.array("torch")}

    def generator_from_state(self, state: np.ndarray):
        gen = self.torch.Generator(device=self.device)
        gen.set_state(self.torch.from_numpy(np.asarray(state, dtype=np.uint8).copy()))
        return gen

    # -- arithmetic ----------------------------------------------------------------
    def axpy_(self, y, x, a: float) -> None:
        y.add_(x, alpha=a)

    def axpy2_(self, y, x1, a1: float, x2, a2: float) -> None:
        y.add_(x1, alpha=a1)
        y.add_(x2, alpha=a2)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def rowsum_sq(self, x, out):
        if x.shape[1] == 1:
            return self.torch.mul(x[:, 0], x[:, 0], out=out)
        return self.torch.linalg.vector_norm(x, dim=1, out=out).square_()

    def finite_rows(self, x):
        return self.torch.isfinite(x).all(dim=1)

    def isfinite(self, x):
        return self.torch.isfinite(x)

    def any(self, mask) -> bool:
        return bool(mask.any())

    def all(self, mask) -> bool:
        return bool(mask.all())

    def count(self, mask) -> int:
        return int(self.torch.count_nonzero(mask))

    def flatnonzero(self, mask) -> np.ndarray:
        return self.torch.nonzero(mask).flatten().cpu().numpy()

    def index(self, idx):
        return self.torch.as_tensor(np.asarray(idx, dtype=np.int64), device=self.device)

    def where(self, mask, x, fill: float):
        return self.torch.where(mask, x, fill)

    def sum(self, x) -> float:
        """The sum as a Python float, accumulated in float64 (one device synchronisation)."""
        return float(x.sum(dtype=self.torch.float64)) if x.is_floating_point() else float(x.sum())

    def max(self, x) -> float:
        """The largest value as a Python float (x non-empty; one device synchronisation)."""
        return float(x.max())

    def fraction(self, mask) -> float:
        return float(self.torch.count_nonzero(mask)) / mask.shape[0]

    def scalar(self, x) -> float:
        return float(x)

    def mean_std(self, x, total, scratch):
        n = x.shape[0]
        mean = float(total) / n
        if x.is_floating_point():
            var = self.torch.sub(x, mean, out=scratch).square_().sum(dtype=self.torch.float64) / n
        else:
            var = ((x.double() - mean) ** 2).sum() / n
        return mean, math.sqrt(float(var))

    def median(self, x, scratch) -> float:
        """np.median's convention (the mean of the two middle values for an even count; NaN if any)."""
        n = x.shape[0]
        if bool(self.torch.isnan(x).any()):
            return float("nan")
        h = n // 2
        if n % 2:
            return float(self.torch.kthvalue(x, h + 1).values)
        top = self.torch.kthvalue(x, h + 1).values
        low = self.torch.kthvalue(x, h).values
        return float((low.double() + top.double()) / 2)

    def mean0(self, x) -> np.ndarray:
        return self.to_numpy(x.mean(dim=0, dtype=self.torch.float64))

    def var0(self, x) -> np.ndarray:
        return self.to_numpy(x.double().var(dim=0, correction=0))

    def available_memory(self) -> int | None:
        if self.device.type == "cuda":
            free, _total = self.torch.cuda.mem_get_info(self.device)
            return int(free)
        return None

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


def _mean_std(x, total, scratch):
    """``(np.mean(x), np.std(x))`` of a 1-D numpy array as floats, equal bit for bit, given
    ``total = np.add.reduce(x)`` and with the centred squares in ``scratch`` (x's shape and dtype)
    instead of a fresh temporary."""
    if x.dtype.kind != "f":
        return float(np.mean(x)), float(np.std(x))
    n = x.shape[0]
    mean = total / n
    np.subtract(x, mean, out=scratch)
    np.multiply(scratch, scratch, out=scratch)
    return float(mean), float(np.sqrt(np.add.reduce(scratch) / n))


def _median(x, scratch):
    """``np.median(x)`` of a 1-D numpy float array as a float, equal bit for bit, using ``scratch``.

    One partition at the upper middle, then a max over each half (the upper one to detect NaN, which
    partitions sort last); numpy's median partitions at two or three places at once (the middle
    pair and the last element), which measured 4–5× slower on 10⁴ and 10⁵ values."""
    n = x.shape[0]
    np.copyto(scratch, x)
    h = n // 2
    scratch.partition(h)
    if np.isnan(np.max(scratch[h:])):
        return float("nan")
    if n % 2:
        return float(scratch[h])
    return float((np.max(scratch[:h]) + scratch[h]) / 2)


def _dtype_name(dtype) -> str:
    if isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None)            # numpy dtypes and scalar types
    if name is None and hasattr(dtype, "is_floating_point"):   # torch dtype
        return str(dtype).replace("torch.", "")
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def make_backend(backend="numpy", dtype=None, device=None):
    """The backend object for ``backend`` ("numpy" | "torch"), ``dtype`` (float32 | float64; default
    float64) and ``device`` (torch only: "cpu", "cuda", "cuda:<i>"; numpy accepts None or "cpu")."""
    if isinstance(backend, (NumpyBackend, TorchBackend)):
        return backend
    check_choice("backend", backend, BACKENDS)
    name = "float64" if dtype is None else _dtype_name(dtype)
    if name not in ("float32", "float64"):
        raise ValueError(f"`dtype` must be float32 or float64, got {dtype!r}")
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"`device` must be None or 'cpu' for backend='numpy', got {device!r}; "
                             "use backend='torch' for a GPU")
        return NumpyBackend(np.dtype(name))
    try:
        import torch  # noqa: F401
    except ImportError:   # pragma: no cover - torch is an optional dependency
        raise ImportError("backend='torch' needs PyTorch: pip install torch") from None
    return TorchBackend(name, device)


def _axpy_table():
    from scipy.linalg import blas

    return {np.float64: blas.daxpy, np.float32: blas.saxpy}


_AXPY = _axpy_table()
#: Elements per BLAS axpy call. OpenBLAS splits an axpy over its threads above 10 000 elements
#: (``if (n <= 10000) nthreads = 1`` in its interface/axpy.c); for this memory-bound update that gains
#: nothing, and on a busy machine the threads wait for cores (on 2 shared cores one 10⁵-element axpy
#: measured 5–8 ms instead of 0.1 ms). Slices of 10 000 keep it on one thread; the result is
#: bit-identical (each element sees the same one fused update).
_AXPY_CHUNK = 10_000
