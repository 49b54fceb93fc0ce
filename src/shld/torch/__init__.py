"""PyTorch training diagnostics (optional extra: ``pip install shld[torch]``).

* :class:`Monitor` — C(t) (plug-in, unbiased, smoothed), B_simple, D_seed / D_sde / D_eff,
  per-group C, λ_max and step-size estimates, events, CSV/JSONL/TensorBoard sinks.
* Backends for tr Σ: norm trick, micro-batches, gradient accumulation / DDP, vmap reference
  (:mod:`shld.torch.backends`).
* Curvature: :class:`HVP`, :func:`lanczos`, :func:`lambda_max` (:mod:`shld.torch.curvature`).
* :class:`SGLD` optimizer and :class:`CScheduler` (the seed's C-driven learning-rate rule).

Definitions and conventions: :mod:`shld.torch.stats` and ``docs/torch.md``.
"""

from .backends import per_sample_grads
from .curvature import HVP, curvature_quantities, lambda_max, lanczos
from .events import EventDetector
from .monitor import Monitor, detect_reduction
from .schedule import Every, LogSpaced, Steps
from .scheduler import CScheduler
from .sgld import SGLD
from .stats import NOISE_KEYS, RatioSmoother, noise_quantities, trace_sigma_from_groups

__all__ = [
    "HVP", "NOISE_KEYS", "SGLD", "CScheduler",
    "EventDetector", "Every", "LogSpaced", "Monitor", "RatioSmoother", "Steps",
    "curvature_quantities", "detect_reduction", "lambda_max", "lanczos", "noise_quantities",
    "per_sample_grads", "trace_sigma_from_groups",
]
