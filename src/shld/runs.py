"""Run folders: every run is a self-describing directory.

Layout::

    RUN_DIR/
      config.json      resolved configuration, seed, versions, start time
      metrics.csv      one row per record, flushed as the run goes
      summary.json     final numbers (written at the end)
      checkpoint.npz   state needed to resume (optional)
      figures/*.png

A report can be rebuilt from the folder alone.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def environment() -> dict:
    """Versions and machine facts recorded with every run."""
    import numpy
    import scipy

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }
    try:
        from importlib.metadata import version

        env["shld"] = version("shld")
    except Exception:
        env["shld"] = "unknown"
    if "torch" in sys.modules:
        env["torch"] = sys.modules["torch"].__version__
    return env


def write_json(path: Path | str, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), so a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


class MetricsWriter:
    """Append rows to a CSV, flushing each one; reopening continues an existing file.

    ``truncate_after`` (a value of the first column) drops rows written after the
    last checkpoint when a run resumes, so resumed and uninterrupted runs agree.
    """

    def __init__(self, path: Path | str, fieldnames: list[str] | None = None):
        self.path = Path(path)
        self.fieldnames = list(fieldnames) if fieldnames else None
        self._fh = None
        self._writer = None

    def truncate_after(self, key: str, last_value: float) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
            fields = rows[0].keys() if rows else None
        keep = [r for r in rows if float(r[key]) <= last_value]
        with self.path.open("w", newline="") as fh:
            if fields:
                w = csv.DictWriter(fh, fieldnames=list(fields))
                w.writeheader()
                w.writerows(keep)

    def write(self, row: dict) -> None:
        if self._writer is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            if self.fieldnames is None:
                if exists:
                    with self.path.open(newline="") as fh:
                        self.fieldnames = next(csv.reader(fh))
                else:
                    self.fieldnames = list(row)
            self._fh = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=self.fieldnames,
                                          extrasaction="ignore")
            if not exists:
                self._writer.writeheader()
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


def read_metrics(path: Path | str) -> dict[str, np.ndarray]:
    """Read a metrics CSV into columns (numeric where possible)."""
    with Path(path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    cols = {}
    for key in rows[0]:
        vals = [r[key] for r in rows]
        try:
            cols[key] = np.array([float(v) for v in vals])
        except ValueError:
            cols[key] = np.array(vals, dtype=object)
    return cols


class RunFolder:
    """A run directory. ``RunFolder.create(root, name, config)`` makes a fresh one;
    ``RunFolder(path)`` opens an existing one (e.g. to resume or to report)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @classmethod
    def create(cls, out: Path | str, config: dict, *, exist_ok: bool = False) -> RunFolder:
        path = Path(out)
        if path.exists() and any(path.iterdir()) and not exist_ok:
            raise FileExistsError(
                f"`out` folder {str(path)!r} exists and is not empty; pass --resume to continue "
                "it or choose another --out")
        (path / "figures").mkdir(parents=True, exist_ok=True)
        run = cls(path)
        if not (path / "config.json").exists():
            write_json(path / "config.json", {
                "config": config,
                "environment": environment(),
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "argv": sys.argv,
            })
        return run

    @property
    def config(self) -> dict:
        return read_json(self.path / "config.json")["config"]

    @property
    def figures(self) -> Path:
        d = self.path / "figures"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def metrics(self, name: str = "metrics.csv", fieldnames=None) -> MetricsWriter:
        return MetricsWriter(self.path / name, fieldnames)

    def read_metrics(self, name: str = "metrics.csv") -> dict[str, np.ndarray]:
        return read_metrics(self.path / name)

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    @property
    def summary(self) -> dict | None:
        p = self.path / "summary.json"
        return read_json(p) if p.exists() else None

    def save_checkpoint(self, **arrays) -> None:
        """Atomically save arrays (and JSON-able scalars via 0-d arrays) to checkpoint.npz."""
        tmp = self.path / "checkpoint.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path / "checkpoint.npz")

    def load_checkpoint(self) -> dict[str, np.ndarray] | None:
        p = self.path / "checkpoint.npz"
        if not p.exists():
            return None
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
