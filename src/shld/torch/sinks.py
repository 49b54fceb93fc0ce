"""Where monitor records go as the run proceeds: CSV, JSON lines, TensorBoard."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

from shld.runs import MetricsWriter

#: The monitor's log files in its ``out`` folder.
LOG_FILES = ("monitor.csv", "monitor.jsonl")


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class CSVSink:
    """One row per record (columns fixed by the first record), flushed per row."""

    def __init__(self, path):
        self.writer = MetricsWriter(path)

    def write(self, record: dict) -> None:
        self.writer.write(record)

    def event(self, event: dict) -> None:
        pass

    def close(self) -> None:
        self.writer.close()


class JSONLSink:
    """Records and events as JSON lines (``{"type": "record"|"event", ...}``), flushed per line."""

    def __init__(self, path):
        self.path = Path(path)
        self.fh = self.path.open("a")

    def _line(self, obj):
        self.fh.write(json.dumps({k: _clean(v) for k, v in obj.items()}) + "\n")
        self.fh.flush()

    def write(self, record: dict) -> None:
        self._line({"type": "record", **record})

    def event(self, event: dict) -> None:
        self._line({"type": "event", **event})

    def close(self) -> None:
        self.fh.close()


class TensorBoardSink:
    """Scalars under ``shld/<key>`` via ``torch.utils.tensorboard`` (needs the tensorboard package)."""

    def __init__(self, log_dir):
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(log_dir=str(log_dir))

    def write(self, record: dict) -> None:
        step = int(record["step"])
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.tb.add_scalar(f"shld/{k}", v, step)

    def event(self, event: dict) -> None:
        self.tb.add_text("shld/events", json.dumps({k: _clean(v) for k, v in event.items()}),
                         int(event["step"]))

    def close(self) -> None:
        self.tb.close()


def _last_step(path: Path) -> int | None:
    """The largest ``step`` of the records in a monitor log (CSV or JSON lines), None if none."""
    steps = []
    with path.open(newline="") as fh:
        if path.suffix == ".csv":
            rows = csv.DictReader(fh)
            vals = [row.get("step") for row in rows]
        else:
            vals = []
            for line in fh:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:  # a torn last line
                    continue
                if isinstance(obj, dict) and obj.get("type") == "record":
                    vals.append(obj.get("step"))
    for v in vals:
        try:
            steps.append(int(float(v)))
        except (TypeError, ValueError):
            continue
    return max(steps) if steps else None


def existing_logs(folder) -> list[tuple[Path, int | None]]:
    """The monitor logs (:data:`LOG_FILES`) already in ``folder``, each with its last recorded step."""
    found = []
    for name in LOG_FILES:
        path = Path(folder) / name
        if path.exists():
            found.append((path, _last_step(path)))
    return found


def make_tensorboard(log_dir):
    """A TensorBoard sink, or None with a warning when tensorboard is not installed."""
    try:
        return TensorBoardSink(log_dir)
    except ImportError as exc:
        warnings.warn(f"`tensorboard`={str(log_dir)!r} ignored: {exc}", RuntimeWarning, stacklevel=3)
        return None
