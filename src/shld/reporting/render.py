"""Claims reports from run folders alone: :func:`collect` reads them, :func:`render_markdown`
and :func:`render_html` write ``report.md`` and a self-contained ``report.html``.

Everything above the "Run time" section is a function of the run folders' configs and
summaries only, so a resumed audit and an uninterrupted one produce the same text there.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

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
    elif data["audit"] is None:
        lines.append(f"Report of {len(data['experiments'])} run folders (no audit.json: mode and timings "
                     "unknown).")
    else:
        lines.append(f"Mode: **{data['mode'] or 'unknown'}** · root seed: "
                     f"{', '.join(map(str, data['seeds'])) or 'unknown'} · experiments: "
                     f"{len(data['experiments'])}.")
    lines += ["", "Each claim of the seed document is compared with what this code measured. Verdict rules are "
              "constants in each experiment module, written before any run (see the Rules section and "
              f"`docs/audit.md`). Verdicts: {' / '.join(VERDICTS)}.", ""]
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
                  "not testable here": ("nottestable", "#9aa0a6"), "depends on reading": ("depends", "#7e57c2")}

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
.depends{background:#e9e1f5}.v-other{background:#e6e0f3}
td.fig{width:30%;min-width:240px;max-width:420px}
.thumb{display:block;width:100%;background-size:contain;background-repeat:no-repeat;background-position:center;
border:1px solid var(--line);-webkit-print-color-adjust:exact;print-color-adjust:exact}
.thumb:hover{outline:2px solid #0b62c4}td.fig .thumb{position:sticky;top:4px}
details.rule summary{cursor:pointer;color:var(--muted);font-size:.85em}details.rule{margin-top:.3em}
details.rule div{font-size:.88em;background:#f7f8fa;padding:.3em .5em;border-left:3px solid var(--line)}
#summary{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
#verdict-chart text{font-size:12px;fill:var(--fg)}#verdict-chart text.in{fill:#fff;font-weight:600}
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


def verdict_chart_svg(data: dict, rows: list[dict]) -> str:
    """The verdict counts as an inline SVG (id ``verdict-chart``): one stacked bar for all rows, then one
    per experiment, each segment labelled with its count and linked to the experiment's rows."""
    total = _counts(rows)
    per = [(e["name"], _counts([r for r in rows if r["experiment"] == e["name"]])) for e in data["experiments"]]
    bars = [("all", total, "#claims")] + [(n, c, f"#study-{n}") for n, c in per if sum(c.values())]
    label_w, bar_w, row_h, top = 130, 460, 22, 30
    scale = bar_w / max(1, max(sum(c.values()) for _, c, _ in bars))
    height = top + row_h * len(bars) + 6
    legend_items, x = [], 0
    for v, n in total.items():
        legend_items.append(f"<rect x='{x}' y='4' width='12' height='12' fill='{_colour(v)}'/>"
                            f"<text x='{x + 16}' y='14'>{html.escape(v)}: {n}</text>")
        x += 30 + 7 * len(f"{v}: {n}")
    title = "Verdicts: " + ", ".join(f"{v} {n}" for v, n in total.items())
    width = max(label_w + bar_w + 50, x)
    S = [f"<svg id='verdict-chart' role='img' aria-labelledby='verdict-chart-title' width='{width}'"
         f" height='{height}' viewBox='0 0 {width} {height}'>",
         f"<title id='verdict-chart-title'>{html.escape(title)}</title>", "<g>" + "".join(legend_items) + "</g>"]
    for k, (name, counts, href) in enumerate(bars):
        y = top + k * row_h
        weight = " font-weight='700'" if name == "all" else ""
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
                S.append(f"<text class='in' x='{x + w / 2:.1f}' y='{y + 14}' text-anchor='middle'>{n}</text>")
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


def render_html(data: dict) -> str:
    """``report.html``: a summary with the verdict chart, one table of claims grouped by experiment with
    each row's figure beside it (a thumbnail that links to the full figure; rows in a run sharing a figure
    share one cell), the rules, notes, every figure at full size (each embedded once), the environment, and
    the run time last. No script and no external address: the file works offline and alone, and its
    Content-Security-Policy (:data:`REPORT_CSP`) lets it load nothing but its own data: images. Non-ASCII
    characters are written as character references, so the page reads the same whatever the file's
    encoding is taken to be (it also declares UTF-8)."""
    e_ = html.escape
    rows = _anchor_rows(_rows(data))
    counts = _counts(rows)
    figs, by_key = _figures(data, rows)
    md_head = _header(data)
    thumbs_css = "".join(f".{f['cls']}{{background-image:url({f['thumb']})}}" for f in figs if f["thumb"])
    H = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
         f"<meta http-equiv='Content-Security-Policy' content=\"{REPORT_CSP}\">",
         "<meta name='viewport' content='width=device-width,initial-scale=1'><title>SHLD claims audit</title>",
         f"<style>{_CSS}{thumbs_css}</style></head><body>", f"<h1>{e_(md_head[0][2:])}</h1>"]
    H += [f"<p>{md_inline(x)}</p>" for x in md_head[1:] if x]
    H.append("<section id='summary'><div>" + verdict_chart_svg(data, rows) + "</div>"
             "<p id='verdict-counts'><b>Verdicts:</b> "
             + " · ".join(f"<span class='{_slug(v)}'>{e_(v)}: {n}</span>" for v, n in counts.items()) + "</p>"
             "</section>")
    H.append("<h2 id='claims'>Claims</h2><table id='claims-table'><thead><tr><th>claim</th><th>seed's number</th>"
             "<th>measured</th><th>verdict</th><th>figure</th></tr></thead><tbody>")
    by_exp: dict[str, list[dict]] = {}
    for r in rows:
        by_exp.setdefault(r["experiment"], []).append(r)
    status = {e["name"]: e for e in data["experiments"]}
    for name, group in by_exp.items():
        e = status[name]
        n_claims = len(group)
        H.append(f"<tr class='study' id='study-{e_(name)}'><th colspan='5'><a href='{e_(e['rel'])}/'>{e_(name)}</a>"
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
                cells = (f"<td>{md_inline(q['claim'])}<div class='id'><code>{e_(q['id'])}</code></div>"
                         f"<details class='rule'><summary>rule</summary><div>{md_inline(q['rule'])}</div></details>"
                         f"</td><td>{md_inline(q['seed_value'])}</td><td>{md_inline(q['measured'])}</td>"
                         f"<td class='v {_slug(q['verdict'])}'>{e_(q['verdict'])}</td>")
                if j == 0:
                    cells += _figure_cell(r, by_key.get((name, r["figure"])) if r["figure"] else None, span)
                H.append(f"<tr id='{e_(q['anchor'])}'>{cells}</tr>")
            k += span
    H.append("</tbody></table>")
    H.append("<h2 id='rules'>Rules</h2><ul>")
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


__all__ = ["collect", "render_markdown", "render_html", "md_inline", "tex_html", "verdict_chart_svg",
           "RUN_TIME_HEADING", "CLAIM_KEYS", "THUMB_PX", "REPORT_CSP"]
