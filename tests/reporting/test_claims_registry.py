"""The claims registry (``shld.claims_registry``) and the report's Seed claims and Validation tables.

The seed document is read from ``../shared/seed/SHLD.md`` next to the repository (or ``$SHLD_SEED``);
the quote tests skip where it is absent (a checkout without the shared folder, e.g. CI)."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

from shld import claims_registry as reg
from shld.claims import VERDICTS, claim_row
from shld.claims_registry import (
    EXPECTED_ROW_IDS,
    NO_STUDY,
    NOT_RUN,
    SEED_CLAIMS,
    VALIDATION_BY_ID,
    classify,
    headline,
)
from shld.reporting.audit import rebuild_report
from shld.reporting.render import collect, render_html, render_markdown, seed_claims
from shld.runs import RunFolder, write_json

ROOT = Path(__file__).resolve().parents[2]
SEED = Path(os.environ.get("SHLD_SEED", ROOT.parent / "shared" / "seed" / "SHLD.md"))
needs_seed = pytest.mark.skipif(not SEED.is_file(), reason=f"the seed document is not at {SEED} (set SHLD_SEED)")


def _norm(s: str) -> str:
    return " ".join(s.split())


def _sections(text: str) -> dict[str, str]:
    """``"H2 › H3"`` (or ``"H2"``) → the normalised text under that heading up to the next one; lines inside
    code fences are never headings (the seed's code has ``# comment`` lines)."""
    out: dict[str, list[str]] = {}
    h2 = h3 = None
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{2,3} ", line):
            level, title = line.split(" ", 1)
            if level == "##":
                h2, h3 = title.strip(), None
            else:
                h3 = title.strip()
            continue
        if h2 is not None:
            out.setdefault(f"{h2} › {h3}" if h3 else h2, []).append(line)
    return {k: _norm("\n".join(v)) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------
# the registry's own data


def test_every_expected_row_is_evidence_for_one_claim_or_a_validation():
    evidence = [r for c in SEED_CLAIMS for r in c.evidence]
    assert len(evidence) == len(set(evidence))                     # no row is evidence for two claims
    assert not set(evidence) & set(VALIDATION_BY_ID)               # nor both evidence and validation
    assert EXPECTED_ROW_IDS == set(evidence) | set(VALIDATION_BY_ID)
    assert len(EXPECTED_ROW_IDS) == 72 and len(VALIDATION_BY_ID) == 15 and len(SEED_CLAIMS) == 30
    assert len({c.id for c in SEED_CLAIMS}) == len(SEED_CLAIMS)
    for c in SEED_CLAIMS:
        assert c.rule in reg.RULES and c.topic and c.section and c.quote
        assert c.evidence or c.note, f"{c.id}: a claim no study tests says why"
        if c.rule != "primary":
            assert len(c.evidence) >= 2, c.id
    # the rows issue 10 names as scored several times now decide one claim each
    assert {r: classify(r) for r in ("kramers-seed-form", "kramers-prefactor", "th2-kramers-seed-form")} == \
        dict.fromkeys(("kramers-seed-form", "kramers-prefactor", "th2-kramers-seed-form"), ("seed", "theorem2-rate"))
    assert {classify(r)[1] for r in ("gibbs-double-well", "theorem3-gibbs", "th3-gibbs")} == {"theorem3"}
    assert {classify(r)[1] for r in ("theorem4-bound", "theorem4-floor-form", "th4-convergence")} == {"theorem4"}
    assert reg.CLAIMS_BY_ID["theorem4"].evidence[0] == "th4-convergence"
    # solver validations and baselines are not seed claims
    for rid, kind in (("fp-solver-vs-exact", "solver validation"), ("master-equation-mfpt", "solver validation"),
                      ("master-equation-density", "solver validation"), ("kramers-langer", "baseline"),
                      ("grok-warn-test-loss-onset", "baseline"), ("grok-warn-weight-norm-drop", "baseline"),
                      ("grok-warn-memorisation", "baseline"), ("lr-mccandlish-accuracy", "baseline"),
                      ("lr-two-over-lambda-accuracy", "baseline"), ("lr-range-test-accuracy", "baseline"),
                      ("grok-occurs", "precondition")):
        assert classify(rid) == ("validation", kind), rid
    assert classify("no-such-row") is None


def _ids_the_studies_write() -> list[str]:
    """Every row id the studies' code writes with default settings, built from their source: a literal first
    argument of ``claim_row`` is an id; each f-string id is expanded from the module constants it uses."""
    from shld.experiments import double_descent, escape, lr_selection
    from shld.observables.early_warning import WARNING_RULES

    tags = {"double-well": "symmetric", "tilted-double-well": "tilted"}
    assert set(escape.LANDSCAPES) == set(tags)
    expand = {
        "dd-peak-{ds}": [f"dd-peak-{ds}" for ds in double_descent.DATASETS],
        "escape-stuck-{tag[ln]}": [f"escape-stuck-{t}" for t in tags.values()],
        "escape-short-{arm}-{tag[ln]}": [f"escape-short-{a}-{t}" for a in ("rule", "literal")
                                         for t in tags.values()],
        "escape-rule-vs-control-{tag[ln]}": [f"escape-rule-vs-control-{t}" for t in tags.values()],
        "grok-warn-{k.replace('_', '-')}": [f"grok-warn-{k.replace('_', '-')}" for k in WARNING_RULES],
        "grok-{key.lower().replace('_', '-')}": ["grok-c-pre", "grok-c-post"],
        "lr-{m.replace('_', '-')}-accuracy": [f"lr-{m.replace('_', '-')}-accuracy" for m in lr_selection.METHODS
                                              if m not in lr_selection.READINGS],
    }
    call = re.compile(r'claim_row\(\s*(?:#[^\n]*\n\s*)?(f?)"([^"]*)"')
    ids = []
    for path in sorted((ROOT / "src" / "shld" / "experiments").glob("*.py")):
        src = path.read_text(encoding="utf-8")
        found = call.findall(src)
        assert len(found) == len(re.findall(r"\bclaim_row\(", src)), \
            f"{path.name}: a claim_row call whose id is not a string literal; teach this test its ids"
        for is_f, text in found:
            if is_f:
                assert text in expand, f"{path.name}: new f-string row id {text!r}; add its expansion here"
                ids += expand[text]
            else:
                ids.append(text)
    # the transformer setting's study writes every grokking row again under its own prefix
    from shld.experiments.grokking import GrokkingStudy, GrokkingTransformerStudy

    assert (GrokkingStudy.row_prefix, GrokkingTransformerStudy.row_prefix) == ("grok", "grok-tf")
    ids += ["grok-tf" + i[len("grok"):] for i in ids if i.startswith("grok-")]
    return ids


def test_the_registry_matches_the_ids_the_studies_write():
    ids = _ids_the_studies_write()
    # ids written at two call sites (a row's run and not-run forms) count once
    assert set(ids) == EXPECTED_ROW_IDS, (sorted(set(ids) - EXPECTED_ROW_IDS), sorted(EXPECTED_ROW_IDS - set(ids)))
    assert {"grok-warn-memorisation", "dd-cifar-width", "master-equation-density", "theorem3-gibbs"} <= set(ids)


@needs_seed
def test_quotes_are_verbatim_under_their_section_and_in_the_seeds_order():
    text = SEED.read_text(encoding="utf-8")
    whole, sections = _norm(text), _sections(text)
    positions = []
    for c in SEED_CLAIMS:
        assert c.section in sections, f"{c.id}: no heading {c.section!r} in the seed"
        for q in c.quote:
            assert _norm(q) in sections[c.section], f"{c.id}: {q!r} is not under {c.section!r}"
        for q in c.restated:
            assert _norm(q) in whole, f"{c.id}: restated {q!r} is not in the seed"
        positions.append(whole.index(_norm(c.quote[0])))
    assert positions == sorted(positions)                     # the registry lists claims in the seed's order
    # the check has teeth: a changed number or a quote from another section is caught
    assert _norm("Escapes within 10 steps (95% of runs)") not in whole
    assert _norm(reg.CLAIMS_BY_ID["theorem3"].quote[1]) not in sections["Theoretical Results › Theorem 2: Kramers "
                                                                         "Escape Rate (Noise-Assisted Barrier Crossing)"]


# --------------------------------------------------------------------------------------------------------
# headline verdicts


def test_primary_rule_takes_the_primary_rows_verdict():
    for v in VERDICTS:                                                 # every outcome, whatever the support says
        other = "fails" if v == "holds" else "holds"
        h = headline("theorem1", {"th1-any": v, "th1-gibbs": other})
        assert (h.verdict, h.decisive, h.present) == (v, ("th1-any",), ("th1-any", "th1-gibbs"))
        assert h.how == "primary row th1-any"
    h = headline("theorem2-rate", {"kramers-seed-form": "fails", "kramers-exponent": "holds"})
    assert (h.verdict, h.decisive) == ("fails", ("kramers-seed-form",))   # the primary's study did not run
    assert h.how == "kramers-seed-form: the primary row kramers-prefactor is not in this audit"
    h = headline("theorem2-rate", {"th2-kramers-seed-form": "partly", "kramers-seed-form": "fails"})
    assert (h.verdict, h.decisive) == ("partly", ("th2-kramers-seed-form",))   # the next listed one decides


def test_combine_rule_reaches_every_outcome():
    ids = reg.CLAIMS_BY_ID["grok-c-drop"].evidence[:3]      # the MLP setting's parts (a quick audit has no others)
    assert reg.CLAIMS_BY_ID["grok-c-drop"].evidence[3:] == tuple("grok-tf" + i[len("grok"):] for i in ids)
    cases = {("holds", "holds", "holds"): "holds", ("fails", "fails", "fails"): "fails",
             ("holds", "fails", "holds"): "partly", ("holds", "partly", "holds"): "partly",
             ("holds", "not testable here", "holds"): "holds",
             ("not testable here",) * 3: "not testable here",
             ("depends on reading", "holds", "holds"): "partly"}
    for parts, want in cases.items():
        h = headline("grok-c-drop", dict(zip(ids, parts)))
        assert (h.verdict, h.decisive) == (want, ids), parts
        assert h.how.startswith("combined over 3 rows; not in this audit: grok-tf-c-drop-300")
    h = headline("grok-c-drop", {ids[0]: "holds", ids[2]: "holds"})
    assert h.verdict == "holds" and h.how.startswith(f"combined over 2 rows; not in this audit: {ids[1]}, grok-tf-")
    # a full audit: the transformer setting is a part too
    tf = reg.CLAIMS_BY_ID["grok-c-drop"].evidence[3:]
    assert headline("grok-c-drop", {**dict.fromkeys(ids, "holds"), **dict.fromkeys(tf, "fails")}).verdict == "partly"


def test_by_reading_rule_says_depends_when_readings_differ():
    ids = reg.CLAIMS_BY_ID["escape-intervention"].evidence
    assert len(ids) == 4
    for v in ("holds", "fails", "partly", "not testable here"):
        assert headline("escape-intervention", dict.fromkeys(ids, v)).verdict == v
    assert headline("escape-intervention", dict(zip(ids, ("fails", "fails", "fails", "holds")))).verdict == \
        "depends on reading"
    assert headline("escape-stuck", {"escape-stuck-symmetric": "holds", "escape-stuck-tilted": "partly"}).verdict \
        == "depends on reading"
    h = headline("escape-stuck", {"escape-stuck-tilted": "fails"})
    assert (h.verdict, h.how) == ("fails", "by reading over 1 row; not in this audit: escape-stuck-symmetric")


def test_not_run_no_study_and_bad_input():
    h = headline("theorem3", {"th1-any": "holds", "kramers-langer": "holds"})   # rows of other claims: ignored
    assert (h.verdict, h.present, h.decisive) == (NOT_RUN, (), ())
    assert h.how == "none of its evidence rows is in this audit (theorem3-gibbs, th3-gibbs, gibbs-double-well)"
    # a validation row is never evidence: the claim it sits beside is not run without its own row
    assert headline("master-equation", {"master-equation-density": "holds"}).verdict == NOT_RUN
    assert [c.id for c in SEED_CLAIMS if not c.evidence] == []        # every seed claim has a study now
    untested = reg.SeedClaim("x", ("a quote",), "A › B", (), note="why no study")
    assert headline(untested, {"master-equation-density": "holds"}) == \
        reg.Headline(NO_STUDY, "no study of SHLD tests this claim", (), ())
    with pytest.raises(ValueError, match=r"`verdicts\['th1-any'\]` must be one of"):
        headline("theorem1", {"th1-any": "mostly"})
    with pytest.raises(KeyError):
        headline("no-such-claim", {})


# --------------------------------------------------------------------------------------------------------
# the report


def _run(root, name, claims):
    run = RunFolder.create(root / name, {"experiment": name, "seed": 0})
    write_json(run.path / "summary.json", {"claims": claims, "notes": []})


def _row(rid, verdict, claim="c"):
    return claim_row(rid, claim, "s", "m", verdict, f"rule of {rid}")


def _audit(tmp_path, langer="fails"):
    _run(tmp_path, "kramers", [_row("kramers-prefactor", "partly"), _row("kramers-exponent", "holds"),
                               _row("kramers-langer", langer, "corrected prefactor"),
                               _row("fp-solver-vs-exact", "holds")])
    _run(tmp_path, "theorems", [_row("th1-any", "fails"), _row("th1-gibbs", "holds"),
                                _row("th2-kramers-seed-form", "fails"), _row("mystery-row", "holds")])
    write_json(tmp_path / "audit.json", {"mode": "quick", "seed": 0, "names": ["kramers", "theorems", "escape"],
                                         "jobs": 1, "experiments": {"escape": {"status": "failed",
                                                                               "reason": "RuntimeError: x"}}})
    return collect(tmp_path)


def _table(page: str, table_id: str) -> str:
    return page.split(f"<table id='{table_id}'>", 1)[1].split("</table>", 1)[0]


#: a claim without a study (every claim of the seed has one now; the report must still show the case)
UNTESTED = reg.SeedClaim("untested-claim", ("Gradient descent is mysterious",), "Mathematical Foundation", (),
                         note="no study", topic="foundations")


def test_report_has_one_row_per_seed_claim_and_a_validation_table(tmp_path, monkeypatch):
    monkeypatch.setattr(reg, "SEED_CLAIMS", (*SEED_CLAIMS, UNTESTED))
    data = _audit(tmp_path)
    n, no_study = len(SEED_CLAIMS) + 1, 1
    not_run = n - no_study - 3                                   # theorem1, theorem2-rate, -exponential decided
    md = render_markdown(data)
    counts = (f"**Seed claims: {n}**, each counted once: holds: 1 · fails: 1 · partly: 1 · not testable here: 0 · "
              f"depends on reading: 0 · not run: {not_run} · no study: {no_study}")
    assert counts in md
    assert "**Validation rows: 2** (solver validations, baselines, preconditions; not counted above): holds: 1 · " \
           "fails: 1 · **rows not in the claims registry: 1**" in md
    seed_md = md.split("## Seed claims", 1)[1].split("## Evidence by study", 1)[0]
    lines = [ln for ln in seed_md.splitlines() if ln.startswith("| `")]
    assert [ln.split("`")[1] for ln in lines] == [c.id for c in SEED_CLAIMS] + ["untested-claim"]
    t2 = next(ln for ln in lines if ln.startswith("| `theorem2-rate`"))
    assert "| **partly** | primary row kramers-prefactor |" in t2
    assert ("**`kramers-prefactor` (kramers): partly**; `th2-kramers-seed-form` (theorems): fails; "
            "`kramers-seed-form`: not run |") in t2
    assert "“The rate of escaping a local minimum over a barrier is: … Γ = (ω₀/2π) · exp(-ΔE/D)”" in t2
    assert "| `theorem3` |" in seed_md and "**not run** | none of its evidence rows" in seed_md
    assert "| **no study** | no study of SHLD tests this claim |" in seed_md
    validation = md.split("## Validation", 1)[1].split("## Rows not in the claims registry", 1)[0]
    assert "| kramers | corrected prefactor |" in validation and "baseline: the corrected Kramers" in validation
    assert "fp-solver-vs-exact" not in md.split("## Validation", 1)[0].split("## Evidence by study", 1)[1]
    assert "| escape | failed: RuntimeError: x |" in md                 # the failed study stays visible
    assert "mystery-row" not in md.split("## Rows not in the claims registry", 1)[0].split("## Seed claims")[1]

    page = render_html(data)
    seed_tbl = _table(page, "seed-claims-table")
    assert re.findall(r"<tr id='seed-([\w.-]+)'>", seed_tbl) == [c.id for c in SEED_CLAIMS] + ["untested-claim"]
    row = seed_tbl.split("<tr id='seed-theorem2-rate'>", 1)[1].split("</tr>", 1)[0]
    assert "<td class='v partly'>partly<div class='how'>primary row kramers-prefactor</div></td>" in row
    assert "<li class='decisive'><a href='#claim-kramers-prefactor'><code>kramers-prefactor</code></a>" in row
    assert "<a href='#claim-th2-kramers-seed-form'>" in row
    assert "<li><code>kramers-seed-form</code> <span class='chip notrun'>not run</span></li>" in row
    # every evidence link lands on a row of the page; evidence rows link back to their claim
    for anchor in re.findall(r"href='#(claim-[\w.-]+)'", seed_tbl):
        assert f"<tr id='{anchor}'>" in page
    assert "evidence for <a href='#seed-theorem1'>theorem1</a>" in _table(page, "claims-table")
    val = _table(page, "validation-table")
    assert re.findall(r"<tr id='claim-([\w.-]+)'>", val) == ["kramers-langer", "fp-solver-vs-exact"]
    assert "<b>solver validation</b>: the Fokker–Planck solver" in html.unescape(val)
    assert re.findall(r"<tr id='claim-([\w.-]+)'>", _table(page, "unregistered-table")) == ["mystery-row"]
    assert not re.findall(r"<tr id='claim-(kramers-langer|fp-solver|mystery)", _table(page, "claims-table"))
    chart = page.split("<svg id='verdict-chart'", 1)[1].split("</svg>", 1)[0]
    assert (f"<title id='verdict-chart-title'>Seed claims: holds 1, fails 1, partly 1, not testable here 0, "
            f"depends on reading 0, not run {not_run}, no study {no_study}</title>") in chart
    assert "<a href='#seed-claims'><text" in chart and "<a href='#seed-theorem1'><text" in chart


def test_validation_rows_do_not_change_the_seeds_totals(tmp_path):
    one = render_markdown(_audit(tmp_path / "a", langer="fails"))
    two = render_markdown(_audit(tmp_path / "b", langer="holds"))
    def seed_part(md):      # the claims' counts line and the Seed claims table
        return md.split("**Seed claims:")[1].split("**Validation rows")[0] + \
            md.split("## Seed claims")[1].split("## Evidence by study")[0]

    assert seed_part(one) == seed_part(two)
    assert "**Validation rows: 2** (solver validations, baselines, preconditions; not counted above): holds: 1 · " \
           "fails: 1" in one
    assert "**Validation rows: 2** (solver validations, baselines, preconditions; not counted above): holds: 2 " in two
    assert {c["headline"].verdict for c in seed_claims([])} == {NOT_RUN}


def test_real_runs_have_only_registered_rows(tmp_path):
    """Small real runs of the studies with validation rows and shared claims: every row they write is known
    to the registry, and the report's Seed claims table decides Theorem 2 from the kramers row."""
    from shld.experiments.registry import run_experiment

    run_experiment("kramers", tmp_path / "kramers", ratios="2,3", n_walkers=60, n_cells=200, horizon=3.0,
                   progress=False)
    run_experiment("double-well", tmp_path / "double-well", n_walkers=200, n_steps=5000, progress=False)
    run_experiment("high-dim", tmp_path / "high-dim", dims=[10], n_walkers=50, n_steps=600, progress=False)
    assert rebuild_report(tmp_path, quiet=True) == 0
    data = collect(tmp_path)
    ids = [c["id"] for e in data["experiments"] for c in e["claims"]]
    assert len(ids) == 9                                # kramers 5, double-well 2, high-dim 2
    assert [i for i in ids if classify(i) is None] == []
    assert {i for i in ids if classify(i)[0] == "validation"} == {"kramers-langer", "master-equation-mfpt",
                                                                   "fp-solver-vs-exact"}
    md = (tmp_path / "report.md").read_text()
    assert "## Rows not in the claims registry" not in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| `theorem2-rate`"))
    verdict = next(c["verdict"] for e in data["experiments"] for c in e["claims"] if c["id"] == "kramers-prefactor")
    assert f"| **{verdict}** | primary row kramers-prefactor |" in row
    assert "`kramers-seed-form` (double-well):" in row
    assert "**Validation rows: 3**" in md
