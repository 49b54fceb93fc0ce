"""Wall time and peak memory of ``shld reproduce --quick``, by experiment.

    python benchmarks/bench_reproduce.py [--out DIR] [--jobs N] [--from-audit DIR]

Runs the quick audit into ``--out`` (a fresh temporary folder by default) and prints a Markdown
table from its ``audit.json``: per experiment the wall time, CPU time (user + sys) and peak
resident memory of the experiment's own process (``os.wait4`` rusage), plus whatever timing the
experiment's summary reports about the PyTorch monitor (keys containing "monitor" and "overhead"
or "seconds"/"time", e.g. grokking's monitor share). ``--from-audit DIR`` only reads an existing
audit folder. Targets (issue 5): whole quick audit ≤ 10 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _monitor_entries(summary: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(key path, value) for numeric summary entries that describe the monitor's cost."""
    out = []
    for k, v in summary.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _monitor_entries(v, path + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            low = path.lower()
            if "monitor" in low and any(w in low for w in ("overhead", "seconds", "time", "share", "ratio")):
                out.append((path, v))
    return out


def table(audit_dir: Path) -> str:
    audit = json.loads((audit_dir / "audit.json").read_text())
    lines = ["| experiment | status | wall s | CPU s | peak RSS MB | monitor (from the summary) |",
             "|---|---|---|---|---|---|"]
    total = 0.0
    for name, rec in audit["experiments"].items():
        wall = rec.get("wall_s")
        total += float(wall or 0.0) + float(rec.get("wall_s_before_resume") or 0.0)
        cpu = (rec.get("user_s") or 0.0) + (rec.get("sys_s") or 0.0)
        mon = ""
        summ = audit_dir / name / "summary.json"
        if summ.exists():
            ents = _monitor_entries(json.loads(summ.read_text()))
            mon = "; ".join(f"{k} = {v:.3g}" for k, v in ents[:4])
        status = rec.get("status", "")
        if status != "done" and rec.get("reason"):
            status += f" ({rec['reason'][:60]})"
        lines.append(f"| {name} | {status} | {wall if wall is not None else ''} | {cpu:.1f} | "
                     f"{rec.get('peak_rss_mb', '')} | {mon} |")
    lines.append(f"| **total** | | **{total:.1f}** | | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--from-audit", default=None, help="read an existing audit folder instead of running")
    args = ap.parse_args(argv)
    if args.from_audit:
        audit_dir = Path(args.from_audit)
        elapsed = None
    else:
        from shld.reporting.audit import reproduce

        audit_dir = Path(args.out or tempfile.mkdtemp(prefix="shld-bench-"))
        t0 = time.perf_counter()
        code = reproduce("quick", audit_dir, jobs=args.jobs, progress=False)
        elapsed = time.perf_counter() - t0
        if code not in (0, 1):
            return code
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"command: shld reproduce --quick --jobs {args.jobs} --out {audit_dir}")
    if elapsed is not None:
        print(f"total wall time (audit process, including report): {elapsed:.1f} s")
    print()
    print(table(audit_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
