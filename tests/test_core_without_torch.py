"""The core (numpy, scipy, matplotlib) imports and runs with PyTorch unavailable."""

import subprocess
import sys

CODE = """
import sys


class _NoTorch:                        # any `import torch...` now raises ImportError
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"blocked for this test: {name}")
        return None


sys.meta_path.insert(0, _NoTorch())
import numpy as np
import shld, shld.landscapes, shld.dynamics, shld.theory, shld.observables, shld.fokker_planck
from shld import StochasticHarmonicLearning
from shld.cli import main
res = shld.dynamics.simulate(shld.landscapes.DoubleWell(), np.zeros(1), n_walkers=10, D=0.1, dt=0.01,
                             n_steps=10, seed=0)
assert res.final_theta.shape == (10, 1)
assert main(["list"]) == 0
assert "torch" not in sys.modules
"""


def test_core_imports_and_runs_without_torch():
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "double-well" in res.stdout            # the CLI lists the core experiments without torch
