"""Claims reports from run folders alone: :func:`collect` reads them, :func:`render_markdown`
and :func:`render_html` write ``report.md`` and a self-contained ``report.html``.

Everything above the "Run time" section is a function of the run folders' configs and
summaries only, so a resumed audit and an uninterrupted one produce the same text there.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from shld.claims import CLAIM_KEYS, VERDICTS, validate_claims
from shld.runs import CorruptFileError, read_config, read_json

RUN_TIME_HEADING = "## Run time"


def _is_run(path: Path) -> bool:
    return (path / "config.json").exists()


def collect(run_dir: Path | str) -> dict:
    """Read an audit folder (``audit.json`` + run folders) or a single run folder."""
    from shld.experiments.registry import audited_studies

    AUDIT_ORDER = audited_studies()

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"`run_dir` {str(run_dir)!r} is not a folder")
    unreadable: list[tuple[str, str]] = []       # (folder or file, what is wrong): listed, not fatal
    audit = None
    if (run_dir / "audit.json").exists():
        try:
            audit = read_json(run_dir / "audit.json")
            if not isinstance(audit, dict):
                raise CorruptFileError(f"{run_dir / 'audit.json'}: is not a JSON object")
        except CorruptFileError as exc:
            audit = None
            unreadable.append((str(run_dir / "audit.json"), str(exc)))
    single = _is_run(run_dir) and audit is None
    if single:
        try:
            study = read_config(run_dir)["config"].get("experiment", run_dir.name)
        except CorruptFileError:
            study = run_dir.name
        folders = {study: run_dir}
        names = list(folders)
    else:
        found = {p.name: p for p in sorted(run_dir.iterdir()) if p.is_dir() and _is_run(p)}
        if audit is not None:
            names = list(audit.get("names") or [n for n in AUDIT_ORDER])
            names += [n for n in found if n not in names]
        else:
            names = [n for n in AUDIT_ORDER if n in found] + [n for n in found if n not in AUDIT_ORDER]
        folders = {n: run_dir / n for n in names}
        if not found and audit is None:
            raise ValueError(f"`run_dir` {str(run_dir)!r} holds no run folders (no */config.json) and no "
                             "audit.json")
    experiments = []
    env, seeds, modes = None, set(), set()
    for name in names:
        folder = folders[name]
        rec = (audit or {}).get("experiments", {}).get(name, {})
        item = {"name": name, "folder": folder, "rel": "." if single else name, "timing": rec, "notes": [],
                "claims": [], "figures": [], "status": None, "reason": ""}
        bad = None
        if _is_run(folder):
            try:
                cfg = read_config(folder)
                env = {**(cfg.get("environment") or {}), **(env or {})}   # union; first run's value wins
                seeds.add(cfg["config"].get("seed"))
            except CorruptFileError as exc:
                bad = str(exc)
        summ = folder / "summary.json"
        s = None
        if bad is None and summ.exists():
            try:
                s = read_json(summ)
                if not isinstance(s, dict):
                    raise CorruptFileError(f"{summ}: is not a JSON object")
            except CorruptFileError as exc:
                bad = str(exc)
        if bad is not None:
            item["status"], item["reason"] = "unreadable", bad
            unreadable.append((str(folder), bad))
        elif s is not None:
            item["status"] = "done"
            try:
                item["claims"] = validate_claims(s.get("claims", []))
            except ValueError as exc:
                item["claims"] = []
                item["notes"].append(f"claims could not be read: {exc}")
            item["notes"] += [str(x) for x in s.get("notes", [])]
            if s.get("figure_error"):
                item["notes"].append(f"figure error: {s['figure_error']}")
            if not item["claims"]:
                item["notes"].append("this experiment reported no claims rows")
        else:
            st = rec.get("status")
            if st in ("not run", "failed"):
                item["status"], item["reason"] = st, rec.get("reason", "")
            elif _is_run(folder):
                item["status"], item["reason"] = "incomplete", "run folder has no summary.json (interrupted?)"
            else:
                item["status"], item["reason"] = "not run", rec.get("reason") or "no run folder"
        figdir = folder / "figures"
        if figdir.is_dir():
            item["figures"] = sorted(p.relative_to(folder).as_posix() for p in figdir.glob("*.png"))
        experiments.append(item)
    if audit is not None:
        env = {**(env or {}), **(audit.get("environment") or {})}
        modes.add(audit.get("mode"))
        seeds = {audit.get("seed")}
    return {"root": run_dir, "single": single, "audit": audit, "experiments": experiments, "unreadable": unreadable,
            "environment": env or {}, "seeds": sorted(s for s in seeds if s is not None),
            "mode": next(iter(modes)) if modes else None}


def _rows(data: dict) -> list[dict]:
    rows = []
    for e in data["experiments"]:
        if e["status"] == "done" and e["claims"]:
            for c in e["claims"]:
                rows.append({"experiment": e["name"], "rel": e["rel"], **c})
        elif e["status"] != "done":
            rows.append({"experiment": e["name"], "rel": e["rel"], "id": f"{e['name']}-not-run",
                         "claim": f"{e['status']}: {e['reason']}", "seed_value": "", "measured": "",
                         "value": None, "uncertainty": None, "verdict": "not testable here",
                         "rule": "experiment not run", "figure": None})
    return rows


def _grouped_rules(rows) -> list[tuple[list[str], str]]:
    """Rows sharing one rule text listed once, in first-appearance order."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r["rule"], []).append(r["id"])
    return [(ids, rule) for rule, ids in groups.items()]


def _counts(rows) -> dict:
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}


def _md_cell(x) -> str:
    return ("" if x is None else str(x)).replace("|", "\\|").replace("\n", " ")


def _header(data) -> list[str]:
    lines = ["# SHLD claims audit", ""]
    if data["single"]:
        lines.append(f"Report of one run folder: `{data['root']}`.")
    else:
        lines.append(f"Mode: **{data['mode'] or 'unknown'}** · root seed: "
                     f"{', '.join(map(str, data['seeds'])) or 'unknown'} · experiments: "
                     f"{len(data['experiments'])}.")
    lines += ["", "Each claim of the seed document is compared with what this code measured. Verdict rules are "
              "constants in each experiment module, written before any run (see the Rules section and "
              "`docs/audit.md`). Verdicts: holds / fails / partly / not testable here.", ""]
    return lines


def render_markdown(data: dict) -> str:
    rows = _rows(data)
    counts = _counts(rows)
    L = _header(data)
    L += ["**Verdicts:** " + " · ".join(f"{v}: {n}" for v, n in counts.items()), "", "## Claims", "",
          "| experiment | claim | seed's number | measured | verdict | figure | run |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        fig = f"[figure]({r['rel']}/{r['figure']})" if r["figure"] else ""
        L.append(f"| {r['experiment']} | {_md_cell(r['claim'])} | {_md_cell(r['seed_value'])} | "
                 f"{_md_cell(r['measured'])} | **{r['verdict']}** | {fig} | [{r['rel']}/]({r['rel']}/) |")
    L += ["", "## Rules", ""]
    for ids, rule in _grouped_rules(rows):
        L.append(f"- {', '.join(f'`{i}`' for i in ids)}: {rule}")
    notes = [(e["name"], n) for e in data["experiments"] for n in e["notes"]]
    if notes:
        L += ["", "## Notes", ""]
        L += [f"- {name}: {n}" for name, n in notes]
    if data.get("unreadable"):
        L += ["", "## Could not be read", ""]
        L += [f"- `{_md_cell(where)}`: {_md_cell(why)}" for where, why in data["unreadable"]]
    L += ["", "## Figures", ""]
    for e in data["experiments"]:
        for f in e["figures"]:
            L.append(f"- {e['name']}: [{f}]({e['rel']}/{f})")
    L += ["", "## Environment", ""]
    for k, v in sorted(data["environment"].items()):
        L.append(f"- {k}: {v}")
    L += ["", RUN_TIME_HEADING, ""] + _timing_lines(data)
    return "\n".join(L) + "\n"


def _timing_lines(data) -> list[str]:
    audit = data["audit"]
    if not audit:
        return ["(no audit.json: timings unknown)"]
    L = ["| experiment | status | wall s | CPU s (user+sys) | peak RSS MB | resumed |", "|---|---|---|---|---|---|"]
    total = 0.0
    for e in data["experiments"]:
        t = e["timing"] or {}
        w = t.get("wall_s")
        if w is not None:
            total += float(w) + float(t.get("wall_s_before_resume") or 0.0)
        cpu = (t.get("user_s") or 0) + (t.get("sys_s") or 0) if t.get("user_s") is not None else None
        L.append(f"| {e['name']} | {t.get('status', e['status'])} | {w if w is not None else ''} | "
                 f"{round(cpu, 1) if cpu is not None else ''} | {t.get('peak_rss_mb', '')} | "
                 f"{'yes' if t.get('resumed') else ''} |")
    L += ["", f"Total experiment wall time: {total:.1f} s (sum over experiments, including time before a "
          f"resume). Started {audit.get('started', '?')}, finished {audit.get('finished', '?')}, "
          f"--jobs {audit.get('jobs', '?')}."]
    return L


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border:1px solid #ccc;padding:4px 6px;
vertical-align:top}th{background:#f3f3f3}.holds{background:#d9f2d9}.fails{background:#f8d7d7}
.partly{background:#fff3cd}.nottestable{background:#e8e8e8}img{max-width:100%;border:1px solid #ddd}
code{background:#f6f6f6}figure{margin:1em 0}
"""


def _b64(path: Path) -> str | None:
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None


def render_html(data: dict) -> str:
    e_ = html.escape
    rows = _rows(data)
    counts = _counts(rows)
    md_head = _header(data)
    H = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>SHLD claims audit</title>",
         f"<style>{_CSS}</style></head><body>", f"<h1>{e_(md_head[0][2:])}</h1>"]
    H += [f"<p>{e_(x)}</p>" for x in md_head[1:] if x]
    H.append("<p><b>Verdicts:</b> " + " · ".join(f"{e_(v)}: {n}" for v, n in counts.items()) + "</p>")
    H += ["<h2>Claims</h2><table><tr><th>experiment</th><th>claim</th><th>seed's number</th><th>measured</th>"
          "<th>verdict</th><th>figure</th><th>run</th></tr>"]
    for r in rows:
        cls = r["verdict"].replace(" ", "").replace("here", "")
        fig = f"<a href='#fig-{e_(r['experiment'])}-{e_(r['figure'])}'>figure</a>" if r["figure"] else ""
        H.append(f"<tr><td>{e_(r['experiment'])}</td><td>{e_(r['claim'])}</td><td>{e_(r['seed_value'])}</td>"
                 f"<td>{e_(r['measured'])}</td><td class='{cls}'><b>{e_(r['verdict'])}</b></td><td>{fig}</td>"
                 f"<td><a href='{e_(r['rel'])}/'>{e_(r['rel'])}/</a></td></tr>")
    H.append("</table><h2>Rules</h2><ul>")
    H += [f"<li>{', '.join(f'<code>{e_(i)}</code>' for i in ids)}: {e_(rule)}</li>"
          for ids, rule in _grouped_rules(rows)]
    H.append("</ul>")
    notes = [(e["name"], n) for e in data["experiments"] for n in e["notes"]]
    if notes:
        H.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e_(a)}: {e_(b)}</li>" for a, b in notes) + "</ul>")
    if data.get("unreadable"):
        H.append("<h2>Could not be read</h2><ul>" + "".join(f"<li><code>{e_(a)}</code>: {e_(b)}</li>"
                                                            for a, b in data["unreadable"]) + "</ul>")
    H.append("<h2>Figures</h2>")
    for e in data["experiments"]:
        for f in e["figures"]:
            b = _b64(e["folder"] / f)
            if b is None:
                continue
            H.append(f"<figure id='fig-{e_(e['name'])}-{e_(f)}'><figcaption><b>{e_(e['name'])}</b>: "
                     f"{e_(f)}</figcaption><img alt='{e_(f)}' src='data:image/png;base64,{b}'></figure>")
    H.append("<h2>Environment</h2><ul>")
    H += [f"<li>{e_(str(k))}: {e_(str(v))}</li>" for k, v in sorted(data["environment"].items())]
    H.append("</ul>")
    H.append(f"<h2>{e_(RUN_TIME_HEADING[3:])}</h2>")
    tl = _timing_lines(data)
    if data["audit"]:
        H.append("<table><tr>" + "".join(f"<th>{e_(c.strip())}</th>" for c in tl[0].strip("|").split("|"))
                 + "</tr>")
        for line in tl[2:]:
            if line.startswith("|"):
                H.append("<tr>" + "".join(f"<td>{e_(c.strip())}</td>" for c in line.strip("|").split("|"))
                         + "</tr>")
        H.append("</table>")
        H += [f"<p>{e_(x)}</p>" for x in tl if x and not x.startswith("|")]
    else:
        H.append(f"<p>{e_(tl[0])}</p>")
    H.append("</body></html>")
    return "\n".join(H) + "\n"


__all__ = ["collect", "render_markdown", "render_html", "RUN_TIME_HEADING", "CLAIM_KEYS"]
