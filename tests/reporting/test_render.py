"""Report rendering from hand-made run folders (no experiment runs)."""

import base64
import html
import io
import re

import numpy as np
import pytest

from shld.claims import claim_row
from shld.claims_registry import SEED_CLAIMS
from shld.reporting.audit import rebuild_report
from shld.reporting.render import (
    REPORT_CSP,
    RUN_TIME_HEADING,
    THUMB_PX,
    collect,
    md_inline,
    render_html,
    seed_claims,
    tex_html,
    verdict_chart_svg,
)
from shld.runs import RunFolder, write_json

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _png(width, height, seed=0) -> bytes:
    """An RGBA PNG of smooth colour waves: thousands of colours, which 256 colours store in less room."""
    Image = pytest.importorskip("PIL.Image")
    y, x = np.mgrid[0:height, 0:width]
    rgb = [127.5 + 127.5 * np.sin(a * x + b * y + seed) for a, b in ((0.013, 0.021), (0.031, -0.007), (0.005, 0.04))]
    arr = np.dstack(rgb + [np.full(x.shape, 255.0)]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _run(root, name, claims, notes=(), figures=None):
    run = RunFolder.create(root / name, {"experiment": name, "seed": 0})
    for rel, raw in (figures or {"figures/a.png": PNG}).items():
        (run.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (run.path / rel).write_bytes(raw)
    write_json(run.path / "summary.json", {"claims": claims, "notes": list(notes)})
    return run


def _visible_text(page: str) -> str:
    """The page's text as a browser shows it, roughly: no style, no tags, references decoded."""
    page = re.sub(r"<style>.*?</style>|<title>.*?</title>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_report_lists_claims_failures_and_bad_rows(tmp_path):
    good = claim_row("g-1", "a | piped claim", "90%", "91% ± 1%", "holds", "rule A", value=0.91,
                     uncertainty=0.01, figure="figures/a.png")
    _run(tmp_path, "exp-a", [good], notes=["a note"])
    _run(tmp_path, "exp-b", [{"id": "bad"}])                      # violates the contract
    write_json(tmp_path / "audit.json", {
        "mode": "quick", "seed": 0, "names": ["exp-a", "exp-b", "exp-c"], "jobs": 1,
        "experiments": {"exp-a": {"status": "done", "wall_s": 1.5, "user_s": 1.0, "sys_s": 0.1,
                                  "peak_rss_mb": 50.0},
                        "exp-c": {"status": "failed", "reason": "ValueError: boom", "wall_s": 0.3}}})
    assert rebuild_report(tmp_path) == 0
    md = (tmp_path / "report.md").read_text()
    assert "a \\| piped claim" in md                             # pipes escaped inside the table
    assert "| exp-c | failed: ValueError: boom |" in md
    assert "claims could not be read" in md and "a note" in md
    # no row here is evidence for a seed claim: every claim is "not run" or "no study"; g-1 is listed apart
    no_study = sum(not c.evidence for c in SEED_CLAIMS)
    assert (f"**Seed claims: {len(SEED_CLAIMS)}**, each counted once: holds: 0 · fails: 0 · partly: 0 · "
            f"not testable here: 0 · depends on reading: 0 · not run: {len(SEED_CLAIMS) - no_study} · "
            f"no study: {no_study}") in md
    unregistered = md.split("## Rows not in the claims registry")[1].split("## Rules")[0]
    assert "| exp-a | a \\| piped claim | 90% | 91% ± 1% | **holds** |" in unregistered
    assert "| exp-c | failed: ValueError: boom |" in md.split("## Evidence by study")[1].split("## Validation")[0]
    # a failed study is named at the top, and its status row is "not run", not a verdict on a claim
    assert ("**Studies that did not finish: 1** — exp-c failed (ValueError: boom). Their claims count as not "
            "run below; rerun with `--resume` to finish them.") in md.split("## Seed claims")[0]
    assert "| exp-c | failed: ValueError: boom |  |  | **not run** |" in md
    assert md.index("## Environment") < md.index(RUN_TIME_HEADING)
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in page   # 67 bytes: kept as it is
    assert "src='figures" not in page                              # nothing loaded from disk
    data = collect(tmp_path)
    assert [e["status"] for e in data["experiments"]] == ["done", "done", "failed"]


def test_md_inline_renders_markdown_safely():
    assert md_inline("**bold** and *it* and __b__ and _i_") == \
        "<strong>bold</strong> and <em>it</em> and <strong>b</strong> and <em>i</em>"
    assert md_inline("`a_b*c` <x>") == "<code>a_b*c</code> &lt;x&gt;"
    # identifiers and the seed's formulas are not emphasis
    for text in ("seed_c_below_1 and n_walkers", "ρ*(θ) ∝ exp(−ℒ(θ)/D) and θ* = 2 * 3 * 4"):
        assert md_inline(text) == html.escape(text)
    assert md_inline("- **ℒ(θ)**: Loss landscape") == "- <strong>ℒ(θ)</strong>: Loss landscape"
    # HTML in the text is escaped, never interpreted, also inside emphasis and code
    assert md_inline("**<script>alert(1)</script>**") == "<strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong>"
    assert md_inline("`<b>`") == "<code>&lt;b&gt;</code>"
    # links: in-page and relative ones are links; anything with a scheme or a host stays text
    assert md_inline("[rule](#claim-a) [run](theorems/)") == \
        '<a href="#claim-a">rule</a> <a href="theorems/">run</a>'
    assert md_inline("[paper](https://arxiv.org/abs/1?a=1&b=2)") == \
        "paper (https://arxiv.org/abs/1?a=1&amp;b=2)"
    assert md_inline("[x](//evil.example/p) [y](javascript:alert)") == \
        "x (//evil.example/p) y (javascript:alert)"
    assert "href" not in md_inline("[z](javascript:alert(1))")
    assert md_inline("[`x` and **b**](#a)") == '<a href="#a"><code>x</code> and <strong>b</strong></a>'
    assert "\0" not in md_inline("a \0 0 \0 b") == "a  0  b"
    # a superscript group in plain text, newlines, None
    assert md_inline("e^{−λ_min t}\nnext") == "e<sup>−λ_min t</sup><br>next"
    assert md_inline(None) == ""


def test_tex_renders_simple_formulas_without_a_cdn():
    assert tex_html(r"\rho^*(\theta) \propto \exp(-\mathcal{L}(\theta)/D)") == \
        "ρ<sup>*</sup>(θ) ∝ exp(−ℒ(θ)/D)"
    assert tex_html(r"\alpha = \frac{2D}{\lambda_{max}}") == "α = (2D)/(λ<sub>max</sub>)"
    assert tex_html(r"\sqrt{2D}\,\xi") == '√<span class="ol">2D</span> ξ'
    assert tex_html("a<b & c") == "a&lt;b &amp; c"
    assert md_inline(r"law $\rho \propto e^{-L/D}$ costs $5 and $6") == \
        'law <span class="math">ρ ∝ e<sup>−L/D</sup></span> costs $5 and $6'


def test_html_embeds_each_figure_once_beside_its_rows(tmp_path):
    wide, square = _png(900, 300), _png(400, 400, seed=3)
    rule = "holds if **both** hold; see `RULE_X`"
    rows = [claim_row("r1", "**bold** claim with ρ*(θ) ∝ exp(−ℒ(θ)/D)", "*seed*", "1 ± 0.1", "holds", rule,
                      figure="figures/wide.png"),
            claim_row("r2", "second on the same figure", "s", "m", "fails", rule, figure="figures/wide.png"),
            claim_row("r3", "control", "s", "m", "partly", "other rule", figure="control/figures/sq.png"),
            claim_row("r4", "wide again, not adjacent", "s", "m", "holds", rule, figure="figures/wide.png"),
            claim_row("r5", "a missing figure", "s", "m", "not testable here", rule, figure="figures/nope.png"),
            claim_row("r6", "outside its run", "s", "m", "fails", rule, figure="../other/figures/x.png")]
    _run(tmp_path, "exp-a", rows, notes=["note with [a link](https://example.org) and `code`"],
         figures={"figures/wide.png": wide, "control/figures/sq.png": square})
    _run(tmp_path, "other", [], figures={"figures/x.png": _png(50, 50)})
    data = collect(tmp_path)
    assert data["experiments"][0]["figures"] == ["figures/wide.png", "control/figures/sq.png"]
    page = render_html(data)

    assert page.isascii()                                 # non-ASCII as references: any decoder reads it
    assert "<meta charset='utf-8'>" in page and f'content="{REPORT_CSP}"' in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|<script""",
                         page, re.I)
    # three figure files (wide, square, the other run's), each embedded once at full size ...
    uris = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page)
    assert [alt for alt, _ in uris] == ["figures/wide.png", "control/figures/sq.png", "figures/x.png"]
    assert len(set(b for _, b in uris)) == 3 and all(page.count(b) == 1 for _, b in uris)
    Image = pytest.importorskip("PIL.Image")
    full = Image.open(io.BytesIO(base64.b64decode(uris[0][1])))
    assert full.size == (900, 300) and full.mode == "P"          # 256 colours, same pixels count
    assert len(base64.b64decode(uris[0][1])) < len(wide)
    # ... and the two that rows use get one thumbnail each, defined once, used by every row that shows it
    thumbs = dict(re.findall(r"\.(t\d+)\{background-image:url\(data:image/png;base64,([A-Za-z0-9+/=]+)\)\}", page))
    assert sorted(thumbs) == ["t1", "t2"]
    t1 = Image.open(io.BytesIO(base64.b64decode(thumbs["t1"])))
    assert t1.size == (THUMB_PX, 213)                             # 900x300 scaled to THUMB_PX wide
    assert Image.open(io.BytesIO(base64.b64decode(thumbs["t2"]))).size == (400, 400)   # small: not enlarged
    table = page.split("<table id='unregistered-table'>")[1].split("</table>")[0]     # ids no claim knows
    cells = re.findall(r"<td class='fig'( rowspan='\d+')?>(.*?)</td>", table)
    assert len(cells) == 5                                        # r1+r2 share one cell; r3; r4; r5; r6
    assert cells[0][0] == " rowspan='2'" and "thumb t1" in cells[0][1] and "href='#fig-1'" in cells[0][1]
    assert "thumb t2" in cells[1][1] and "thumb t1" in cells[2][1]
    assert "figure missing" in cells[3][1] and "figure missing" in cells[4][1]
    assert "style='aspect-ratio:640/213'" in cells[0][1]
    # markdown and formulas are rendered; no literal markers are left in what a reader sees
    text = _visible_text(page)
    assert "**" not in text and "`" not in text
    assert "ρ*(θ) ∝ exp(−ℒ(θ)/D)" in text
    assert "<strong>bold</strong> claim" in page and "<code>RULE_X</code>" in page
    assert "a link (https://example.org)" in text                # the address as plain text, not a link
    # the verdict chart counts seed claims, not these rows: one bar for all claims and one per topic
    chart = verdict_chart_svg(seed_claims([]))
    assert chart in page
    no_study = sum(not c.evidence for c in SEED_CLAIMS)
    assert (f"<title id='verdict-chart-title'>Seed claims: holds 0, fails 0, partly 0, not testable here 0, "
            f"depends on reading 0, not run {len(SEED_CLAIMS) - no_study}, no study {no_study}</title>") in chart
    # all claims and the 7 topics, each only "not run" (every claim has a study)
    assert no_study == 0 and len(re.findall(r"<rect class='seg ", chart)) == 1 + 7
    assert "<a href='#seed-claims'>" in chart and "<a href='#seed-master-equation'>" in chart


def test_html_above_run_time_depends_on_the_folders_only(tmp_path):
    _run(tmp_path, "exp-a", [claim_row("a", "c", "s", "m", "holds", "r", figure="figures/a.png")])
    audit = {"mode": "quick", "seed": 0, "names": ["exp-a"], "jobs": 1,
             "experiments": {"exp-a": {"status": "done", "wall_s": 1.5}}}
    write_json(tmp_path / "audit.json", audit)
    one = render_html(collect(tmp_path))
    audit["experiments"]["exp-a"].update(wall_s=99.0, resumed=True, peak_rss_mb=12.0)
    audit.update(started="later", jobs=2)
    write_json(tmp_path / "audit.json", audit)
    two = render_html(collect(tmp_path))
    assert one != two and "99.0" in two
    assert one.split("<h2>Run time")[0] == two.split("<h2>Run time")[0]
    assert one.index("<h2>Run time") > one.index("<h2 id='environment'>")     # the run time stays last
    assert render_html(collect(tmp_path)) == two                               # same folders, same bytes
