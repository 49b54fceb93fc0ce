"""DDP (gloo, CPU, 2 spawned processes) gives the tr Σ of a single process over the same global batch.

Start and tear-down are deterministic: a per-test rendezvous file, a timeout on every collective,
a barrier before ``destroy_process_group`` (so no rank tears gloo down while the other is still
inside a collective), and every rank's traceback written to a file and shown in the failure message.
"""

import datetime
import json
import os
import sys
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from shld.torch import Monitor

B_GLOBAL = 16
RTOL = 1e-4  # float32, all-reduce of sums: relative agreement ~1e-6
TIMEOUT = datetime.timedelta(seconds=60)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(B_GLOBAL, 5, generator=g), torch.randint(0, 3, (B_GLOBAL,), generator=g)


def _ce(m, b):
    return nn.functional.cross_entropy(m(b[0]), b[1])


def _measure(rank, world):
    model = nn.parallel.DistributedDataParallel(_model())
    x, y = _batch()
    n = B_GLOBAL // world
    local = (x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n])
    nt = Monitor(model, schedule=1)                       # auto -> norm trick, all-reduced
    rk = Monitor(model, schedule=1, backend="ddp")        # ranks as groups
    with nt.track(local), rk.track(local):
        _ce(model, local).backward()
    out = {"norm_trick": [nt.backend, nt.last["trace_sigma"], nt.last["grad_sq_norm"], nt.last["batch_size"]],
           "ddp": [rk.backend, rk.last["trace_sigma"], rk.last["grad_sq_norm"]]}
    del nt, rk, model  # release DDP's reducer (it holds the process group) before tear-down
    return out


def _worker(rank, world, folder):
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                world_size=world, timeout=TIMEOUT)
        try:
            out = _measure(rank, world)
            dist.barrier()  # both ranks are out of every collective before either tears down
            if rank == 0:
                tmp = os.path.join(folder, "out.json.tmp")
                with open(tmp, "w") as fh:
                    json.dump(out, fh)
                os.replace(tmp, os.path.join(folder, "out.json"))
        finally:
            dist.destroy_process_group()
    except BaseException:
        with open(os.path.join(folder, f"rank{rank}.err"), "w") as fh:
            fh.write(traceback.format_exc())
        raise


def _spawn(folder, world=2):
    try:
        mp.spawn(_worker, args=(world, str(folder)), nprocs=world, join=True)
    except Exception as exc:
        errs = {p.name: p.read_text() for p in sorted(folder.glob("rank*.err"))}
        detail = "\n".join(f"--- {k} ---\n{v}" for k, v in errs.items()) or "(no rank wrote a traceback)"
        pytest.fail(f"DDP ranks failed: {exc!r}\n{detail}")
    return json.loads((folder / "out.json").read_text())


@pytest.mark.skipif(not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed")
def test_ddp_trace_sigma_equals_single_process(tmp_path):
    got = _spawn(tmp_path)
    model, batch = _model(), _batch()
    single = Monitor(model, schedule=1)
    with single.track(batch):
        _ce(model, batch).backward()
    model.zero_grad()
    split = Monitor(model, loss_fn=_ce, schedule=1, backend="microbatch", microbatches=2)
    with split.track(batch):
        _ce(model, batch).backward()
    assert got["norm_trick"][0] == "norm_trick" and got["norm_trick"][3] == B_GLOBAL
    assert got["norm_trick"][1] == pytest.approx(single.last["trace_sigma"], rel=RTOL)
    assert got["norm_trick"][2] == pytest.approx(single.last["grad_sq_norm"], rel=RTOL)
    # the rank-level estimator equals the single-process 2-group (micro-batch) estimator
    assert got["ddp"][0] == "ddp"
    assert got["ddp"][1] == pytest.approx(split.last["trace_sigma"], rel=RTOL)
    assert got["ddp"][2] == pytest.approx(split.last["grad_sq_norm"], rel=RTOL)
