"""``report.html`` in a real headless browser (Chromium), from two tiny real runs.

Chromium is driven through its command line only (no Python dependency): a copy of the page gets a
small script that records console errors, load failures and Content-Security-Policy violations from the
first byte, and once the page has loaded reads every ``<img>``'s decoded width, loads every thumbnail
into an image of its own, measures the verdict
chart and writes what it found as JSON into ``<pre id="shld-results">``; ``--dump-dom`` hands that back,
and ``--screenshot`` saves the page as the test's artefact (its path is printed: ``pytest -s`` shows it; with
``SHLD_ARTEFACTS=DIR`` it is copied to ``DIR/report_browser.png``, which outlives pytest's temporary folders).

Skips where no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shld.claims_registry import STATUSES, claims_table
from shld.experiments.registry import run_experiment
from shld.reporting.audit import rebuild_report
from shld.reporting.render import REPORT_CSP, collect

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH: apt-get install chromium "
                                                        "(Debian's package) to run the browser test")

# the report's own policy, plus the probe's inline script; everything else stays forbidden
PROBE_CSP = REPORT_CSP + "; script-src 'unsafe-inline'"
PROBE = """<script>
window.__shld = {errors: [], violations: []};
(function () {
  const orig = console.error.bind(console);
  console.error = (...a) => { __shld.errors.push(a.map(String).join(' ')); orig(...a); };
  window.addEventListener('error', ev => {
    const t = ev.target;
    __shld.errors.push(t && t !== window ? 'failed to load ' + (t.currentSrc || t.src || t.href || t.tagName)
                                         : 'uncaught: ' + ev.message);
  }, true);
  window.addEventListener('unhandledrejection', ev => __shld.errors.push('unhandled rejection: ' + ev.reason));
  document.addEventListener('securitypolicyviolation',
                            ev => __shld.violations.push(ev.violatedDirective + ' ' + ev.blockedURI));
})();
window.addEventListener('load', async () => {
  const pre = document.createElement('pre');
  pre.id = 'shld-results';
  pre.textContent = JSON.stringify({stage: 'loaded, decoding did not finish'});
  document.body.appendChild(pre);
  const size = el => { const b = el.getBoundingClientRect(); return [b.width, b.height]; };
  const loaded = u => new Promise(r => {     // a fresh image of the URL: its natural width, 0 if it fails
    const im = new Image(); im.onload = () => r(im.naturalWidth); im.onerror = () => r(0); im.src = u;
  });
  const imgs = [...document.images];
  const decoded = await Promise.all(imgs.map(im => im.complete ? im.naturalWidth : loaded(im.src)));
  const thumbs = [...document.querySelectorAll('.thumb')];
  const urls = thumbs.map(el => (getComputedStyle(el).backgroundImage.match(/url\\("?(.*?)"?\\)$/) || [])[1] || '');
  const widths = await Promise.all(urls.map(u => u ? loaded(u) : 0));
  const chart = document.getElementById('verdict-chart');
  const res = {
    charset: document.characterSet, title: document.title,
    images: imgs.map((im, i) => ({alt: im.alt, naturalWidth: decoded[i], complete: im.complete})),
    thumbs: thumbs.map((el, i) => ({label: el.getAttribute('aria-label'), naturalWidth: widths[i],
                                    size: size(el)})),
    chart: chart && {size: size(chart), segments: chart.querySelectorAll('rect.seg').length,
                     title: chart.querySelector('title').textContent},
    rows: document.querySelectorAll('#claims-table tbody tr:not(.study)').length,
    seedRows: [...document.querySelectorAll('#seed-claims-table tbody tr')].map(tr => [tr.id,
               tr.querySelector('td.v').firstChild.textContent]),
    validationTable: !!document.getElementById('validation-table'),
    text: document.body.innerText.replace(pre.innerText, ''),
    resources: performance.getEntriesByType('resource').map(e => e.name),
    errors: __shld.errors, violations: __shld.violations, stage: 'done',
  };
  pre.textContent = JSON.stringify(res);
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-audit")
    run_experiment("escape", root / "escape", n_walkers=200, n_steps=400, progress=False)
    run_experiment("theorems", root / "theorems", n_walkers=300, t3_walkers=300, t3_dt=0.02, t4_time=2.0,
                   D_values=[0.2], progress=False)
    assert rebuild_report(root, quiet=True) == 0
    return root


def _browse(page, shot, profile) -> tuple[dict, list[str]]:
    """Open ``page`` in headless Chromium; (the probe's results, console lines on stderr)."""
    cmd = [BROWSER, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
           "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--window-size=1400,1800", "--virtual-time-budget=10000", "--dump-dom", f"--screenshot={shot}",
           page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="shld-results">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the probe wrote no results (rc {proc.returncode}); stderr tail:\n{proc.stderr[-2000:]}"
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    res = json.loads(html.unescape(m.group(1)))
    assert res["stage"] == "done", (res, console)
    return res, console


def test_report_in_headless_chromium(report, tmp_path):
    page = (report / "report.html").read_text(encoding="ascii")      # non-ASCII is written as references
    csp = f"<meta http-equiv='Content-Security-Policy' content=\"{REPORT_CSP}\">"
    assert csp in page
    # offline by construction: nothing in the file points outside it
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//|<link\b|<script\b|@import""", page, re.I)

    probe = tmp_path / "report_probe.html"
    probe.write_text(page.replace(csp, f"<meta http-equiv='Content-Security-Policy' content=\"{PROBE_CSP}\">"
                                  + PROBE, 1), encoding="ascii")
    shot = tmp_path / "report.png"
    res, console = _browse(probe, shot, tmp_path / "profile")
    if os.environ.get("SHLD_ARTEFACTS"):                 # a folder that outlives pytest's tmp_path (CI)
        keep = Path(os.environ["SHLD_ARTEFACTS"]) / "report_browser.png"
        keep.parent.mkdir(parents=True, exist_ok=True)
        shot = Path(shutil.copyfile(shot, keep))
    print(f"\nscreenshot of report.html in headless Chromium: {shot}")

    assert res["charset"] == "UTF-8" and res["title"] == "SHLD claims audit"
    assert res["errors"] == [] and res["violations"] == [] and console == [], (res["errors"], res["violations"],
                                                                               console)
    assert res["resources"] == []                       # not one file or URL fetched: images are data: URIs
    data = collect(report)
    n_rows = sum(len(e["claims"]) for e in data["experiments"])
    n_figs = sum(len(e["figures"]) for e in data["experiments"])
    assert res["rows"] == n_rows >= 10
    # every full-size figure decodes at its real size; every thumbnail beside a row decodes too
    assert len(res["images"]) == n_figs == 5            # escape.png, theorem1/3/4.png, theorem4_floor_vs_D.png
    assert all(im["complete"] and im["naturalWidth"] > 300 for im in res["images"]), res["images"]
    assert {im["alt"] for im in res["images"]} == {"figures/escape.png", "figures/theorem1.png",
                                                   "figures/theorem3.png", "figures/theorem4.png",
                                                   "figures/theorem4_floor_vs_D.png"}
    assert res["thumbs"] and all(t["naturalWidth"] > 100 and t["size"][0] > 100 and t["size"][1] > 30
                                 for t in res["thumbs"]), res["thumbs"]
    # one row per seed claim, with the headline the registry decides from these runs' rows
    rows = [c for e in data["experiments"] for c in e["claims"]]
    table = claims_table(rows)
    assert res["seedRows"] == [[f"seed-{c.id}", h.verdict] for c, h in table]
    assert dict(res["seedRows"])["seed-theorem1"] == next(r["verdict"] for r in rows if r["id"] == "th1-any")
    assert not res["validationTable"]                  # escape and theorems write no validation rows
    # the verdict chart is drawn, and counts claims (not rows) as the table does
    counts = {v: sum(h.verdict == v for _, h in table) for v in STATUSES}
    chart = res["chart"]
    assert chart is not None and chart["size"][0] > 300 and chart["size"][1] > 50
    assert chart["title"] == "Seed claims: " + ", ".join(f"{v} {n}" for v, n in counts.items())
    assert chart["segments"] >= sum(n > 0 for n in counts.values()) + 7     # "all" + one bar per topic
    # the visible text: markdown and formulas rendered, Unicode intact
    text = res["text"]
    assert "**" not in text and "`" not in text
    assert "ρ*(θ) ∝ exp(−ℒ(θ)/D)" in text                            # theorem 3's claim, as the seed writes it
    assert "th1-gibbs" in text and "escape" in text
    assert shot.stat().st_size > 20_000
