"""Wall time and peak memory of ``shld reproduce --quick``, by experiment.

    python benchmarks/bench_reproduce.py [--out DIR] [--jobs N] [--from-audit DIR]

Runs the quick audit into ``--out`` (a fresh temporary folder by default) and prints a Markdown
table from its ``audit.json``: per experiment the wall time, CPU time (user + sys) and peak
resident memory of the experiment's own process (``os.wait4`` rusage), plus whatever timing the
experiment's summary reports about the PyTorch monitor (keys containing "monitor" and "overhead"
or "seconds"/"time", e.g. grokking's monitor share). ``--from-audit DIR`` only reads an existing
audit folder; ``--monitor-share`` also times grokking at the quick size (one seed, no control) with
and without the monitor, per epoch. Targets (issue 5): whole quick audit ≤ 10 minutes on the 2-core machine.
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


def monitor_share(seed: int = 0) -> dict | None:
    """Grokking at the quick audit's size (one seed, no control), with and without the monitor:
    wall time per epoch of each and the monitor's share of the monitored run."""
    try:
        from shld.experiments.grokking import AUDIT
        from shld.experiments.registry import run_experiment
    except ModuleNotFoundError as exc:
        print(f"monitor share not measured: {exc}")
        return None
    out = {}
    with tempfile.TemporaryDirectory(prefix="shld-bench-mon-") as tmp:
        for on in (True, False):
            cfg = {**AUDIT["quick"], "n_seeds": 1, "control": False, "monitor": on, "seed": seed}
            t0 = time.perf_counter()
            _, summ = run_experiment("grokking", Path(tmp) / f"mon_{on}", progress=False, **cfg)
            wall = time.perf_counter() - t0
            member = json.loads((Path(tmp) / f"mon_{on}" / "seed_0" / "summary.json").read_text())
            out[on] = {"wall_s": wall, "epochs": member.get("epochs_run"), "train_s": member.get("wall_s")}
    per_on = out[True]["train_s"] / out[True]["epochs"]
    per_off = out[False]["train_s"] / out[False]["epochs"]
    return {"epochs_on": out[True]["epochs"], "epochs_off": out[False]["epochs"], "s_per_epoch_on": per_on,
            "s_per_epoch_off": per_off, "ratio": per_on / per_off, "share": 1.0 - per_off / per_on}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--from-audit", default=None, help="read an existing audit folder instead of running")
    ap.add_argument("--monitor-share", action="store_true",
                    help="also time grokking (quick size, one seed) with and without the monitor")
    args = ap.parse_args(argv)
    if args.from_audit:
        audit_dir = Path(args.from_audit)
        if not (audit_dir / "audit.json").is_file():
            ap.error(f"--from-audit: {audit_dir} holds no audit.json (a folder written by shld reproduce)")
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
    if args.monitor_share:
        m = monitor_share()
        if m:
            print()
            print(f"grokking, quick size, 1 seed: {m['s_per_epoch_on'] * 1e3:.2f} ms/epoch with the monitor "
                  f"({m['epochs_on']} epochs), {m['s_per_epoch_off'] * 1e3:.2f} ms/epoch without "
                  f"({m['epochs_off']} epochs): ratio {m['ratio']:.2f}, monitor share {m['share']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
