"""Report rendering from hand-made run folders (no experiment runs)."""

import base64

from shld.claims import claim_row
from shld.reporting.audit import rebuild_report
from shld.reporting.render import RUN_TIME_HEADING, collect
from shld.runs import RunFolder, write_json

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _run(root, name, claims, notes=()):
    run = RunFolder.create(root / name, {"experiment": name, "seed": 0})
    (run.figures / "a.png").write_bytes(PNG)
    write_json(run.path / "summary.json", {"claims": claims, "notes": list(notes)})
    return run


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
    assert "**Verdicts:** holds: 1 · fails: 0 · partly: 0 · not testable here: 1" in md
    assert md.index("## Environment") < md.index(RUN_TIME_HEADING)
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in html
    assert "src='figures" not in html                              # nothing loaded from disk
    data = collect(tmp_path)
    assert [e["status"] for e in data["experiments"]] == ["done", "done", "failed"]
