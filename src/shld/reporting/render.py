"""Claims reports from run folders alone: :func:`collect` reads them, :func:`render_markdown`
and :func:`render_html` write ``report.md`` and a self-contained ``report.html``.

The report counts *claims of the seed*, not rows: its first table has one row per claim of
:data:`shld.claims_registry.SEED_CLAIMS` with a headline verdict decided from that claim's evidence
rows (:func:`shld.claims_registry.headline`). The studies' rows follow, grouped by study: the
evidence rows, then a Validation table (solver validations, baselines, preconditions: not counted),
then any row the registry does not know (listed so that it is seen; not counted either).

Everything above the "Run time" section is a function of the run folders' configs and
summaries only, so a resumed audit and an uninterrupted one produce the same text there.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

from shld import claims_registry as registry
from shld.claims import CLAIM_KEYS, VERDICTS, validate_claims
from shld.runs import CorruptFileError, read_config, read_json

RUN_TIME_HEADING = "## Run time"


def _is_run(path: Path) -> bool:
    return (path / "config.json").exists()


def _inside(folder: Path, rel: str) -> bool:
    """``folder/rel`` is an existing file inside ``folder`` (a row's figure path may not leave its run)."""
    try:
        p = (folder / rel).resolve()
        return p.is_file() and p.is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


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
        for c in item["claims"]:               # figures a row names outside figures/ (e.g. control/figures/)
            f = c.get("figure")
            if f and f not in item["figures"] and _inside(folder, f):
                item["figures"].append(f)
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
                         "value": None, "uncertainty": None, "verdict": registry.NOT_RUN,
                         "rule": "experiment not run", "figure": None, "role": "status", "seed_claim": None})
    for r in rows:
        if "role" not in r:
            where = registry.classify(r["id"])
            r["role"] = "unregistered" if where is None else where[0]
            r["seed_claim"] = where[1] if where is not None and where[0] == "seed" else None
    return rows


def seed_claims(rows: list[dict]) -> list[dict]:
    """One record per seed claim (the registry's order): ``claim`` (:class:`~shld.claims_registry.SeedClaim`),
    ``headline`` (:class:`~shld.claims_registry.Headline`) and ``evidence``, the claim's rows found in ``rows``
    (:func:`_rows`' dicts, in the registry's order; the first of a repeated id)."""
    found: dict[str, dict] = {}
    for r in rows:
        if r["role"] == "seed":
            found.setdefault(r["id"], r)
    out = []
    for claim, head in registry.claims_table(found.values()):
        out.append({"claim": claim, "headline": head, "evidence": [found[i] for i in head.present]})
    return out


def _claim_counts(claims: list[dict]) -> dict:
    return {v: sum(c["headline"].verdict == v for c in claims) for v in registry.STATUSES}


def _decisive_row(c: dict) -> dict | None:
    """The row whose figure stands beside a claim: the first deciding row with a figure, else any evidence row's."""
    dec = [r for r in c["evidence"] if r["id"] in c["headline"].decisive]
    return next((r for r in dec + c["evidence"] if r.get("figure")), None)


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
    elif data["audit"] is None:
        lines.append(f"Report of {len(data['experiments'])} run folders (no audit.json: mode and timings "
                     "unknown).")
    else:
        lines.append(f"Mode: **{data['mode'] or 'unknown'}** · root seed: "
                     f"{', '.join(map(str, data['seeds'])) or 'unknown'} · experiments: "
                     f"{len(data['experiments'])}.")
    unfinished = [e for e in data["experiments"] if e["status"] in ("failed", "incomplete")]
    if unfinished:
        lines += ["", f"**Studies that did not finish: {len(unfinished)}** — "
                  + "; ".join(f"{e['name']} {e['status']} ({e['reason'] or 'no reason recorded'})" for e in unfinished)
                  + ". Their claims count as not run below; rerun with `--resume` to finish them."]
    lines += ["", "Each claim of the seed document is compared with what this code measured. Verdict rules are "
              "constants in each experiment module, written before any run (see the Rules section and "
              f"`docs/audit.md`). Verdicts: {' / '.join(VERDICTS)}.", ""]
    return lines


def _summary_lines(claims: list[dict], rows: list[dict]) -> tuple[str, str]:
    """The summary's two lines (plain text with **bold** labels): claims counted once each; validation rows."""
    counts = _claim_counts(claims)
    one = (f"**Seed claims: {len(claims)}**, each counted once: "
           + " · ".join(f"{v}: {n}" for v, n in counts.items()))
    val = [r for r in rows if r["role"] == "validation"]
    vc = {v: n for v, n in _counts(val).items() if n}
    two = (f"**Validation rows: {len(val)}** (solver validations, baselines, preconditions; not counted above)"
           + (": " + " · ".join(f"{v}: {n}" for v, n in vc.items()) if vc else ""))
    unreg = sum(r["role"] == "unregistered" for r in rows)
    if unreg:
        two += f" · **rows not in the claims registry: {unreg}** (listed apart, not counted)"
    return one, two


def _evidence_text(c: dict) -> str:
    """A claim's evidence rows as markdown: `id` (study): verdict; the deciding rows in bold."""
    if not c["claim"].evidence:
        return "no study of SHLD tests this claim"
    parts = []
    for rid in c["claim"].evidence:
        r = next((x for x in c["evidence"] if x["id"] == rid), None)
        if r is None:
            parts.append(f"`{rid}`: not run")
            continue
        text = f"`{rid}` ({r['experiment']}): {r['verdict']}"
        parts.append(f"**{text}**" if rid in c["headline"].decisive else text)
    return "; ".join(parts)


_MD_ROW_HEAD = ["| experiment | claim | seed's number | measured | verdict | figure | run | seed claim |",
                "|---|---|---|---|---|---|---|---|"]


def _md_row(r: dict, last: str) -> str:
    fig = f"[figure]({r['rel']}/{r['figure']})" if r["figure"] else ""
    return (f"| {r['experiment']} | {_md_cell(r['claim'])} | {_md_cell(r['seed_value'])} | "
            f"{_md_cell(r['measured'])} | **{r['verdict']}** | {fig} | [{r['rel']}/]({r['rel']}/) | {_md_cell(last)} |")


def _where(audit: dict) -> str:
    """Where the sweeps ran: the executor (and its address) when one was named, else the worker count."""
    ex = audit.get("executor")
    if isinstance(ex, dict) and ex.get("name"):
        return f"executor {ex['name']}" + (f" at {ex['address']}" if ex.get("address") else "")
    jobs = audit.get("jobs")
    return f"--jobs {jobs if jobs is not None else 1}"


def render_markdown(data: dict) -> str:
    rows = _rows(data)
    claims = seed_claims(rows)
    L = _header(data)
    one, two = _summary_lines(claims, rows)
    L += [one, "", two, "", "## Seed claims", "",
          "One row per testable statement of the seed (`shld.claims_registry`); its verdict comes from the "
          "evidence rows below by the rule named in *decided by*.", "",
          "| seed claim | the seed's words | section | verdict | decided by | evidence rows |",
          "|---|---|---|---|---|---|"]
    for c in claims:
        k, h = c["claim"], c["headline"]
        L.append(f"| `{k.id}` | “{_md_cell(k.text)}” | {_md_cell(k.section)} | **{h.verdict}** | "
                 f"{_md_cell(h.how)} | {_md_cell(_evidence_text(c))} |")
    L += ["", "## Evidence by study", "", *_MD_ROW_HEAD]
    for r in rows:
        if r["role"] in ("seed", "status"):
            L.append(_md_row(r, f"`{r['seed_claim']}`" if r["seed_claim"] else ""))
    val = [r for r in rows if r["role"] == "validation"]
    L += ["", "## Validation", "", "Rows that test the code or give a baseline, not a statement of the seed; "
          "not counted in the seed's totals.", ""]
    if val:
        L += [_MD_ROW_HEAD[0].replace("seed claim |", "kind: why not a seed claim |"), _MD_ROW_HEAD[1]]
        for r in val:
            v = registry.VALIDATION_BY_ID[r["id"]]
            L.append(_md_row(r, f"{v.kind}: {v.why}"))
    else:
        L.append("(none in this audit)")
    unreg = [r for r in rows if r["role"] == "unregistered"]
    if unreg:
        L += ["", "## Rows not in the claims registry", "",
              "These rows' ids are neither evidence for a seed claim nor a validation in `shld.claims_registry`: "
              "not counted.", "", *_MD_ROW_HEAD]
        L += [_md_row(r, "") for r in unreg]
    L += ["", "## Rules", ""]
    L += [f"- seed claims decided by *{name}*: {text}" for name, text in registry.RULES.items()]
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
          f"{_where(audit)}."]
    return L


# ---------------------------------------------------------------------------------------------------------
# HTML: a page a person reads in a browser. Self-contained and offline (no script, no external URL): figures
# are embedded once each, claims' texts go through a small markdown converter, and a verdict chart is drawn
# as inline SVG. Everything is a function of `data`, so the page above "Run time" is too.
# ---------------------------------------------------------------------------------------------------------

#: width in pixels of the thumbnails shown beside the claims (about twice their CSS width: sharp on HiDPI)
THUMB_PX = 640

#: the page's Content-Security-Policy: it may show data: images and its own styles, and load or run nothing
#: else (no script, no file, no network), even if a claim's text named an address
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

#: verdict -> (CSS class, colour); a verdict not listed here (a new one) gets a grey of its own
_VERDICT_STYLE = {"holds": ("holds", "#2e9d5b"), "fails": ("fails", "#d0453f"), "partly": ("partly", "#e9a13b"),
                  "not testable here": ("nottestable", "#9aa0a6"), "depends on reading": ("depends", "#7e57c2"),
                  registry.NOT_RUN: ("notrun", "#bfc5cc"), registry.NO_STUDY: ("nostudy", "#dfe3e8")}

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d0d7de;--head:#f3f4f6}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans","Liberation Sans",Arial,
"Segoe UI Symbol","Noto Sans Math","Cambria Math","STIX Two Math","DejaVu Math TeX Gyre",sans-serif;
max-width:1500px;margin:1.5em auto;padding:0 1em;color:var(--fg);line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid var(--line);padding-bottom:.2em;margin-top:1.8em}
a{color:#0b62c4}code{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",Menlo,Consolas,monospace;
background:#f2f3f5;padding:0 .25em;border-radius:3px;font-size:.92em}
.math{font-family:"STIX Two Math","Cambria Math","Latin Modern Math","DejaVu Math TeX Gyre","Noto Sans Math",
"DejaVu Serif",serif;white-space:nowrap}.math .ol{text-decoration:overline}
.muted,.id{color:var(--muted);font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border:1px solid var(--line);padding:5px 7px;vertical-align:top;text-align:left}th{background:var(--head)}
tr.study th{background:#e9eef5;font-size:1.05em}tr.study th a{color:inherit}
td.v{font-weight:600;white-space:nowrap}
.holds{background:#dcf3e4}.fails{background:#fadcdb}.partly{background:#fdf0d5}.nottestable{background:#eceef0}
.depends{background:#e9e1f5}.v-other{background:#e6e0f3}.notrun{background:#f1f2f4}.nostudy{background:#f8f8f9}
q.seed{display:block}
td .how{font-weight:400;font-size:.8em;color:var(--muted);white-space:normal}
ul.ev{margin:0;padding-left:1.1em}ul.ev li.decisive{font-weight:600}
.chip{display:inline-block;padding:0 .35em;border-radius:3px;font-size:.82em;font-weight:600;white-space:nowrap}
td.fig{width:30%;min-width:240px;max-width:420px}#seed-claims-table td.fig{width:24%;min-width:200px}
.thumb{display:block;width:100%;background-size:contain;background-repeat:no-repeat;background-position:center;
border:1px solid var(--line);-webkit-print-color-adjust:exact;print-color-adjust:exact}
.thumb:hover{outline:2px solid #0b62c4}td.fig .thumb{position:sticky;top:4px}
details.rule summary{cursor:pointer;color:var(--muted);font-size:.85em}details.rule{margin-top:.3em}
details.rule div{font-size:.88em;background:#f7f8fa;padding:.3em .5em;border-left:3px solid var(--line)}
#summary{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
#verdict-chart text{font-size:12px;fill:var(--fg)}#verdict-chart text.in{fill:#fff;font-weight:600}
#verdict-chart text.in.dark{fill:var(--fg)}
figure{margin:1.2em 0;padding:.5em;border:1px solid var(--line);border-radius:4px}
figure:target{outline:3px solid #0b62c4}figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.9em;margin-bottom:.4em}
"""

_MD_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_MD_MATH = re.compile(r"(?<![\\\w$])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\(([^()\s]+)\)")
_MD_SUP = re.compile(r"\^\{([^{}\n]+)\}")
_MD_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_MD_ITAL = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])"
                      r"|(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])", re.S)
#: a link target that stays in the page or the audit folder: "#anchor" or a relative path (no scheme, no "//")
_LOCAL_TARGET = re.compile(r"#[\w.:-]*|[\w-][\w.-]*(/[\w.-]+)*/?(#[\w.:-]*)?")


def _emphasis(s: str) -> str:
    s = _MD_BOLD.sub(lambda m: f"<strong>{m.group(2)}</strong>", s)
    return _MD_ITAL.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", s)


def md_inline(text) -> str:
    """A small, safe markdown-to-HTML converter for one paragraph of a claims row, a rule or a note:
    ``code``, **bold** / __bold__, *italics* / _italics_, [links](target), ``$TeX$`` (:func:`tex_html`) and
    a superscript group ``^{...}`` written in plain text.

    The text is HTML-escaped first, so nothing in it can inject markup. Links to a place in the page or a
    relative path become ``<a>``; any other (``https:``, any scheme, ``//host``) is written as its text followed
    by its address in plain text, so the page never points at anything outside itself. An underscore
    inside a word (``n_walkers``) or a star after a symbol (``ρ*(θ)``) is not emphasis. Newlines become
    ``<br>``."""
    text = "" if text is None else str(text).replace("\0", "")
    keep: list[str] = []

    def hold(h: str) -> str:
        keep.append(h)
        return f"\0{len(keep) - 1}\0"

    text = _MD_CODE.sub(lambda m: hold(f"<code>{html.escape(m.group(2).strip())}</code>"), text)
    text = _MD_MATH.sub(lambda m: hold(f"<span class=\"math\">{tex_html(m.group(1))}</span>"), text)
    text = html.escape(text)

    def link(m) -> str:
        label, target = _emphasis(m.group(1)), m.group(2)
        if _LOCAL_TARGET.fullmatch(html.unescape(target)):
            return hold(f"<a href=\"{target}\">{label}</a>")
        return hold(f"{label} ({target})")

    text = _MD_SUP.sub(r"<sup>\1</sup>", _MD_LINK.sub(link, text))      # e^{−λt} written outside $...$
    text = _emphasis(text).replace("\n", "<br>")
    for _ in range(3):                       # a held link may hold code or math: at most two levels
        text = re.sub("\0(\\d+)\0", lambda m: keep[int(m.group(1))], text)
    return text


_TEX_SYMBOLS = {
    **{g: c for g, c in zip(
        "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi rho "
        "sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega".split(),
        "αβγδϵεζηθϑικλμνξπρστυϕφχψωΓΔΘΛΞΠΣΦΨΩ")},
    "propto": "∝", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈",
    "sim": "∼", "times": "×", "cdot": "·", "pm": "±", "mp": "∓", "infty": "∞", "nabla": "∇", "partial": "∂",
    "sum": "∑", "prod": "∏", "int": "∫", "to": "→", "rightarrow": "→", "leftarrow": "←", "Rightarrow": "⇒",
    "in": "∈", "ell": "ℓ", "mathcal{L}": "ℒ", "langle": "⟨", "rangle": "⟩", "lVert": "‖", "rVert": "‖",
    "|": "‖", "star": "⋆", "ast": "∗", "dots": "…", "ldots": "…", "cdots": "⋯", "top": "⊤", "equiv": "≡",
    "ll": "≪", "gg": "≫", "min": "min", "max": "max", "exp": "exp", "log": "log", "ln": "ln", "sin": "sin",
    "cos": "cos", "tr": "tr", "det": "det", "lim": "lim", "sup": "sup", "inf": "inf", "mathrm": "",
    ",": " ", ";": " ", ":": " ", "!": "", " ": " ", "quad": " ", "qquad": "  ", "{": "{", "}": "}",
    "left": "", "right": "", "big": "", "Big": "", "operatorname": "", "text": "", "mathbf": "", "mathit": "",
}


def _tex_command(s: str, i: int) -> tuple[str, int]:
    """The HTML of the command starting at ``s[i] == '\\\\'`` (without arguments), and the index after it."""
    if s.startswith("\\mathcal{L}", i):
        return "ℒ", i + len("\\mathcal{L}")
    m = re.compile(r"\\([A-Za-z]+|.)").match(s, i)
    if m is None:
        return "\\", i + 1
    name = m.group(1)
    return html.escape(_TEX_SYMBOLS.get(name, name)), m.end()


def _tex_arg(s: str, i: int) -> tuple[str, int]:
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        return _tex_parse(s, i + 1, closing=True)
    if s[i] == "\\":
        return _tex_command(s, i)
    return html.escape(s[i]), i + 1


def _tex_parse(s: str, i: int = 0, closing: bool = False) -> tuple[str, int]:
    out = []
    while i < len(s):
        c = s[i]
        if c == "}" and closing:
            return "".join(out), i + 1
        if c == "{":
            h, i = _tex_parse(s, i + 1, closing=True)
            out.append(h)
        elif c in "^_":
            h, i = _tex_arg(s, i + 1)
            out.append(f"<sup>{h}</sup>" if c == "^" else f"<sub>{h}</sub>")
        elif c == "\\" and (s.startswith("\\frac", i) or s.startswith("\\sqrt", i)):
            if s.startswith("\\frac", i):
                a, i = _tex_arg(s, i + 5)
                b, i = _tex_arg(s, i)
                out.append(f"({a})/({b})" if len(html.unescape(a)) > 1 or len(html.unescape(b)) > 1
                           else f"{a}/{b}")
            else:
                a, i = _tex_arg(s, i + 5)
                out.append(f"√<span class=\"ol\">{a}</span>")
        elif c == "\\":
            h, i = _tex_command(s, i)
            out.append(h)
        else:
            out.append("−" if c == "-" else html.escape(c))
            i += 1
    return "".join(out), i


def tex_html(src: str) -> str:
    """Simple TeX (``\\rho^*(\\theta) \\propto \\exp(-\\mathcal{L}/D)``) as escaped HTML with Unicode
    symbols and ``<sub>``/``<sup>``: Greek letters, common operators, ``\\frac``, ``\\sqrt``, ``^``, ``_``
    and groups. Anything it does not know is shown as its name; nothing is fetched."""
    return _tex_parse(str(src))[0]


def _slug(verdict: str) -> str:
    return _VERDICT_STYLE.get(verdict, ("v-other", ""))[0]


def _colour(verdict: str) -> str:
    return _VERDICT_STYLE.get(verdict, ("", "#8e7cc3"))[1]


def _image_info(raw: bytes) -> tuple[str, int, int] | None:
    """(mime type, width, height) of a PNG (or mime and 0, 0 for a JPEG); None for anything else."""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        return "image/png", int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if raw[:3] == b"\xff\xd8\xff":
        return "image/jpeg", 0, 0
    return None


def _compact_png(raw: bytes, width: int | None = None) -> tuple[bytes, int, int] | None:
    """``raw`` as a 256-colour PNG on white, at most ``width`` pixels wide when given (Pillow, which
    matplotlib depends on). Plots lose nothing visible and shrink about 3x. None when it cannot be made."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            rgba = im.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        img = flat.convert("RGB")
        if width is not None and img.width > width:
            img = img.resize((width, max(1, round(img.height * width / img.width))), Image.LANCZOS)
        img = img.quantize(256, method=2, dither=0)      # 2: fast octree (an int: any Pillow version)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue(), img.width, img.height
    except Exception:      # no Pillow, or an image it cannot read: not fatal
        return None


def _uri(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _figures(data: dict, rows: list[dict]) -> tuple[list[dict], dict]:
    """Every figure of the report once: a list of records (id, experiment, rel, data URI, thumbnail URI,
    width, height, claim anchors using it) and a map (experiment, rel) -> record for the rows. Full
    figures are embedded as 256-colour PNGs when that is smaller (the run folder keeps the original);
    figures that rows use also get a thumbnail of at most :data:`THUMB_PX` pixels."""
    figs, by_key = [], {}
    for e in data["experiments"]:
        for rel in e["figures"]:
            try:
                raw = (e["folder"] / rel).read_bytes()
            except OSError:
                continue
            info = _image_info(raw)
            if info is None:
                continue
            small = _compact_png(raw)
            if small is not None and len(small[0]) < len(raw):
                raw, info = small[0], ("image/png", small[1], small[2])
            n = len(figs) + 1
            rec = {"id": f"fig-{n}", "cls": f"t{n}", "experiment": e["name"], "rel": rel, "raw": raw,
                   "uri": _uri(raw, info[0]), "w": info[1], "h": info[2], "used_by": [], "thumb": None}
            figs.append(rec)
            by_key[(e["name"], rel)] = rec
    for r in rows:
        rec = by_key.get((r["experiment"], r["figure"])) if r.get("figure") else None
        if rec is not None:
            rec["used_by"].append(r["anchor"])
    for rec in figs:
        if rec["used_by"]:
            t = _compact_png(rec["raw"], THUMB_PX)
            if t is not None:
                rec["thumb"], rec["w"], rec["h"] = _uri(t[0]), t[1], t[2]
            else:
                rec["thumb"] = rec["uri"]
    return figs, by_key


def verdict_chart_svg(claims: list[dict]) -> str:
    """The seed claims' headline verdicts as an inline SVG (id ``verdict-chart``): one stacked bar for all
    claims, then one per topic of the registry, each segment labelled with its count; every bar links to
    its first claim in the Seed claims table. Counts claims, never rows (validation rows are not in it)."""
    total = _claim_counts(claims)
    topics: dict[str, list[dict]] = {}
    for c in claims:
        topics.setdefault(c["claim"].topic or "other", []).append(c)
    bars = [("all claims", total, "#seed-claims")]
    bars += [(t, _claim_counts(cs), f"#seed-{cs[0]['claim'].id}") for t, cs in topics.items()]
    label_w, bar_w, row_h, top = 130, 460, 22, 30
    scale = bar_w / max(1, max(sum(c.values()) for _, c, _ in bars))
    height = top + row_h * len(bars) + 6
    legend_items, x = [], 0
    for v, n in total.items():
        legend_items.append(f"<rect x='{x}' y='4' width='12' height='12' fill='{_colour(v)}'/>"
                            f"<text x='{x + 16}' y='14'>{html.escape(v)}: {n}</text>")
        x += 30 + 7 * len(f"{v}: {n}")
    title = "Seed claims: " + ", ".join(f"{v} {n}" for v, n in total.items())
    width = max(label_w + bar_w + 50, x)
    S = [f"<svg id='verdict-chart' role='img' aria-labelledby='verdict-chart-title' width='{width}'"
         f" height='{height}' viewBox='0 0 {width} {height}'>",
         f"<title id='verdict-chart-title'>{html.escape(title)}</title>", "<g>" + "".join(legend_items) + "</g>"]
    for k, (name, counts, href) in enumerate(bars):
        y = top + k * row_h
        weight = " font-weight='700'" if k == 0 else ""
        S.append(f"<a href='{html.escape(href)}'><text x='{label_w - 6}' y='{y + 14}' text-anchor='end'{weight}>"
                 f"{html.escape(name)}</text></a>")
        x = float(label_w)
        for v, n in counts.items():
            if not n:
                continue
            w = n * scale
            S.append(f"<rect class='seg {_slug(v)}-seg' x='{x:.1f}' y='{y + 2}' width='{w:.1f}' height='{row_h - 6}'"
                     f" fill='{_colour(v)}'><title>{html.escape(name)}: {html.escape(v)} {n}</title></rect>")
            if w >= 14:
                dark = " dark" if v in (registry.NOT_RUN, registry.NO_STUDY) else ""   # light segments: dark text
                S.append(f"<text class='in{dark}' x='{x + w / 2:.1f}' y='{y + 14}' text-anchor='middle'>{n}</text>")
            x += w
        S.append(f"<text x='{x + 5:.1f}' y='{y + 14}' class='muted'>{sum(counts.values())}</text>")
    S.append("</svg>")
    return "".join(S)


def _anchor_rows(rows: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    for r in rows:
        base = "claim-" + re.sub(r"[^\w.-]+", "-", str(r["id"]))
        seen[base] = seen.get(base, 0) + 1
        r["anchor"] = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return rows


def _seed_claims_html(claims: list[dict], by_key: dict) -> list[str]:
    """The Seed claims table: one row per claim, its quote, section, headline, evidence links and the
    deciding row's figure beside it."""
    e_ = html.escape
    H = ["<table id='seed-claims-table'><thead><tr><th>seed claim</th><th>verdict</th><th>evidence rows</th>"
         "<th>figure</th></tr></thead><tbody>"]
    for c in claims:
        k, h = c["claim"], c["headline"]
        note = (f"<details class='rule'><summary>why these rows</summary><div>{md_inline(k.note)}</div></details>"
                if k.note else "")
        also = ("<div class='muted'>also: " + " · ".join(f"“{md_inline(q)}”" for q in k.restated) + "</div>"
                if k.restated else "")
        if not k.evidence:
            ev = "<span class='muted'>no study of SHLD tests this claim</span>"
        else:
            items = []
            for rid in k.evidence:
                r = next((x for x in c["evidence"] if x["id"] == rid), None)
                if r is None:
                    items.append(f"<li><code>{e_(rid)}</code> <span class='chip notrun'>not run</span></li>")
                    continue
                strong = " class='decisive'" if rid in h.decisive else ""
                items.append(f"<li{strong}><a href='#{e_(r['anchor'])}'><code>{e_(rid)}</code></a> "
                             f"<span class='muted'>({e_(r['experiment'])})</span> "
                             f"<span class='chip {_slug(r['verdict'])}'>{e_(r['verdict'])}</span></li>")
            ev = "<ul class='ev'>" + "".join(items) + "</ul>"
        fig_row = _decisive_row(c)
        fig = (_figure_cell(fig_row, by_key.get((fig_row["experiment"], fig_row["figure"])), 1) if fig_row
               else "<td class='fig'></td>")
        H.append(f"<tr id='seed-{e_(k.id)}'><td><q class='seed'>{md_inline(k.text)}</q>{also}"
                 f"<div class='id'><code>{e_(k.id)}</code> · {e_(k.section)}</div>{note}</td>"
                 f"<td class='v {_slug(h.verdict)}'>{e_(h.verdict)}<div class='how'>{md_inline(h.how)}</div></td>"
                 f"<td>{ev}</td>{fig}</tr>")
    H.append("</tbody></table>")
    return H


def _rows_table_html(table_id: str, rows: list[dict], by_key: dict, data: dict, extra) -> list[str]:
    """A table of rows grouped by study (a header row per study), each row's figure beside it (rows in a run
    sharing a figure share one cell); ``extra(row)`` is HTML shown under the row's claim."""
    e_ = html.escape
    H = [f"<table id='{table_id}'><thead><tr><th>claim</th><th>seed's number</th>"
         "<th>measured</th><th>verdict</th><th>figure</th></tr></thead><tbody>"]
    by_exp: dict[str, list[dict]] = {}
    for r in rows:
        by_exp.setdefault(r["experiment"], []).append(r)
    status = {e["name"]: e for e in data["experiments"]}
    for name, group in by_exp.items():
        e = status[name]
        n_claims = len(group)
        head_id = f" id='study-{e_(name)}'" if table_id == "claims-table" else ""
        H.append(f"<tr class='study'{head_id}><th colspan='5'><a href='{e_(e['rel'])}/'>{e_(name)}</a>"
                 f" <span class='muted'>{e_(e['status'] or '')} · {n_claims} row{'s' * (n_claims != 1)}</span>"
                 "</th></tr>")
        k = 0
        while k < len(group):
            r = group[k]
            span = 1
            while k + span < len(group) and r["figure"] and group[k + span]["figure"] == r["figure"]:
                span += 1
            for j in range(span):
                q = group[k + j]
                cells = (f"<td>{md_inline(q['claim'])}<div class='id'><code>{e_(q['id'])}</code>{extra(q)}</div>"
                         f"<details class='rule'><summary>rule</summary><div>{md_inline(q['rule'])}</div></details>"
                         f"</td><td>{md_inline(q['seed_value'])}</td><td>{md_inline(q['measured'])}</td>"
                         f"<td class='v {_slug(q['verdict'])}'>{e_(q['verdict'])}</td>")
                if j == 0:
                    cells += _figure_cell(r, by_key.get((name, r["figure"])) if r["figure"] else None, span)
                H.append(f"<tr id='{e_(q['anchor'])}'>{cells}</tr>")
            k += span
    H.append("</tbody></table>")
    return H


def _evidence_extra(r: dict) -> str:
    if r.get("seed_claim"):
        c = html.escape(r["seed_claim"])
        return f" · evidence for <a href='#seed-{c}'>{c}</a>"
    return ""


def _validation_extra(r: dict) -> str:
    v = registry.VALIDATION_BY_ID.get(r["id"])
    return f" · <b>{html.escape(v.kind)}</b>: {md_inline(v.why)}" if v else ""


def render_html(data: dict) -> str:
    """``report.html``: a summary with the verdict chart of the seed's claims, the Seed claims table (one
    row per claim of :data:`shld.claims_registry.SEED_CLAIMS`, its headline verdict, links to its evidence
    rows and the deciding row's figure beside it), the evidence rows grouped by study with each row's
    figure beside it (a thumbnail that links to the full figure; rows in a run sharing a figure share one
    cell), the Validation table (not counted in the totals), any row the registry does not know, the rules,
    notes, every figure at full size (each embedded once), the environment, and the run time last. No
    script and no external address: the file works offline and alone, and its Content-Security-Policy
    (:data:`REPORT_CSP`) lets it load nothing but its own data: images. Non-ASCII characters are written as
    character references, so the page reads the same whatever the file's encoding is taken to be (it also
    declares UTF-8)."""
    e_ = html.escape
    rows = _anchor_rows(_rows(data))
    claims = seed_claims(rows)
    figs, by_key = _figures(data, rows)
    md_head = _header(data)
    thumbs_css = "".join(f".{f['cls']}{{background-image:url({f['thumb']})}}" for f in figs if f["thumb"])
    H = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
         f"<meta http-equiv='Content-Security-Policy' content=\"{REPORT_CSP}\">",
         "<meta name='viewport' content='width=device-width,initial-scale=1'><title>SHLD claims audit</title>",
         f"<style>{_CSS}{thumbs_css}</style></head><body>", f"<h1>{e_(md_head[0][2:])}</h1>"]
    H += [f"<p>{md_inline(x)}</p>" for x in md_head[1:] if x]
    two = _summary_lines(claims, rows)[1]
    H.append("<section id='summary'><div>" + verdict_chart_svg(claims) + "</div>"
             f"<div><p id='verdict-counts'><b>Seed claims: {len(claims)}</b>, each counted once: "
             + " · ".join(f"<span class='{_slug(v)}'>{e_(v)}: {n}</span>" for v, n in _claim_counts(claims).items())
             + f"</p><p id='validation-counts'>{md_inline(two)}</p></div></section>")
    H.append("<h2 id='seed-claims'>Seed claims</h2><p class='muted'>One row per testable statement of the seed "
             "(<code>shld.claims_registry</code>), quoted verbatim; its verdict comes from the evidence rows below "
             "by the rule under it (Rules).</p>")
    H += _seed_claims_html(claims, by_key)
    H.append("<h2 id='claims'>Evidence by study</h2>")
    H += _rows_table_html("claims-table", [r for r in rows if r["role"] in ("seed", "status")], by_key, data,
                          _evidence_extra)
    H.append("<h2 id='validation'>Validation</h2><p class='muted'>Rows that test the code or give a baseline, not "
             "a statement of the seed; not counted in the seed's totals.</p>")
    val = [r for r in rows if r["role"] == "validation"]
    H += (_rows_table_html("validation-table", val, by_key, data, _validation_extra) if val
          else ["<p>(none in this audit)</p>"])
    unreg = [r for r in rows if r["role"] == "unregistered"]
    if unreg:
        H.append("<h2 id='unregistered'>Rows not in the claims registry</h2><p class='muted'>Neither evidence for "
                 "a seed claim nor a validation in <code>shld.claims_registry</code>: not counted.</p>")
        H += _rows_table_html("unregistered-table", unreg, by_key, data, lambda r: "")
    H.append("<h2 id='rules'>Rules</h2><ul>")
    H += [f"<li>seed claims decided by <em>{e_(name)}</em>: {md_inline(text)}</li>"
          for name, text in registry.RULES.items()]
    H += [f"<li>{', '.join(f'<code>{e_(i)}</code>' for i in ids)}: {md_inline(rule)}</li>"
          for ids, rule in _grouped_rules(rows)]
    H.append("</ul>")
    notes = [(e["name"], n) for e in data["experiments"] for n in e["notes"]]
    if notes:
        H.append("<h2 id='notes'>Notes</h2><ul>" + "".join(f"<li><b>{e_(a)}</b>: {md_inline(b)}</li>"
                                                          for a, b in notes) + "</ul>")
    if data.get("unreadable"):
        H.append("<h2>Could not be read</h2><ul>" + "".join(f"<li><code>{e_(a)}</code>: {e_(b)}</li>"
                                                            for a, b in data["unreadable"]) + "</ul>")
    H.append("<h2 id='figures'>Figures</h2>")
    for f in figs:
        used = ", ".join(f"<a href='#{e_(a)}'>{e_(a[len('claim-'):])}</a>" for a in f["used_by"])
        H.append(f"<figure id='{f['id']}'><figcaption><b>{e_(f['experiment'])}</b>: {e_(f['rel'])}"
                 + (f" <span class='muted'>· shown beside {used}</span>" if used else "") + "</figcaption>"
                 f"<img alt='{e_(f['rel'])}' src='{f['uri']}'></figure>")
    H.append("<h2 id='environment'>Environment</h2><ul>")
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
    return ("\n".join(H) + "\n").encode("ascii", "xmlcharrefreplace").decode("ascii")


def _figure_cell(row: dict, rec: dict | None, span: int) -> str:
    rs = f" rowspan='{span}'" if span > 1 else ""
    if not row.get("figure"):
        return f"<td class='fig'{rs}></td>"
    if rec is None:
        return (f"<td class='fig'{rs}><span class='muted'>figure missing: <code>{html.escape(row['figure'])}</code>"
                "</span></td>")
    ratio = f"{rec['w']}/{rec['h']}" if rec["w"] and rec["h"] else "16/9"
    label = html.escape(f"{row['experiment']}: {rec['rel']}")
    return (f"<td class='fig'{rs}><a class='thumb {rec['cls']}' href='#{rec['id']}' role='img' aria-label='{label}'"
            f" title='{label} (click for full size)' style='aspect-ratio:{ratio}'></a></td>")


__all__ = ["collect", "render_markdown", "render_html", "md_inline", "tex_html", "verdict_chart_svg", "seed_claims",
           "RUN_TIME_HEADING", "CLAIM_KEYS", "THUMB_PX", "REPORT_CSP"]
