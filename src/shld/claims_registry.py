"""The claims registry: every testable statement of the seed document (``SHLD.md``) once, and which
audit rows are evidence for it.

The studies write *rows* (:mod:`shld.claims`); several rows may test one statement of the seed
(Theorem 2 is checked by the kramers, double-well and theorems studies), and some rows test no
statement of the seed at all (solver validations, baselines). The report counts *claims*: one
headline verdict per :class:`SeedClaim`, decided from its evidence rows by the claim's stated
``rule``, and lists the rows of :data:`VALIDATIONS` in a table of their own that the seed's totals
leave out.

A :class:`SeedClaim` holds

============  =================================================================================
``id``        short stable identifier, e.g. ``"theorem2-rate"``
``quote``     the seed's own words, verbatim (fragments of one passage, shown joined by " … ")
``section``   the seed's headings above the first fragment, ``"H2 › H3"``
``evidence``  row ids that test it, the primary one first
``rule``      how the headline verdict comes from the rows (:data:`RULES`)
``note``      why these rows (and not others) are its evidence, or why none exists
``restated``  the same claim in other words elsewhere in the seed (verbatim too)
``topic``     a short label that groups claims in the report's chart
============  =================================================================================

The headline verdict (:func:`headline`) is one of :data:`shld.claims.VERDICTS`, or
:data:`NOT_RUN` (the registry names evidence rows, but none is in this audit) or :data:`NO_STUDY`
(no study of SHLD tests the claim). Tests check that every quote is in the seed after whitespace
normalisation and under the stated section, and that every row id a study can write is either
evidence for exactly one claim or a validation (:data:`EXPECTED_ROW_IDS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shld.claims import VERDICTS, by_reading, combine

#: the report's status of a claim whose evidence rows are all missing from the audit (its studies did not run)
NOT_RUN = "not run"
#: the report's status of a claim that no study of SHLD tests (its ``evidence`` is empty)
NO_STUDY = "no study"
#: everything a claim's headline can be, in the order the report counts them
STATUSES: tuple[str, ...] = VERDICTS + (NOT_RUN, NO_STUDY)

#: how a claim's headline verdict comes from its evidence rows
RULES: dict[str, str] = {
    "primary": "the primary row's verdict (the first listed); the other rows are shown as support and do "
               "not change it. If the primary row's study did not run, the next listed row that did decides.",
    "combine": "every listed row is a part of the claim: all holds → holds, all fails → fails, any other "
               "mixture → partly; 'not testable here' parts are ignored unless all are (shld.claims.combine).",
    "by_reading": "each listed row tests one reading of the seed's words (a setting the seed leaves open): the "
                  "common verdict, or 'depends on reading' when they differ (shld.claims.by_reading).",
}

SEED_SOURCE = "SHLD.md"


@dataclass(frozen=True)
class SeedClaim:
    id: str
    quote: tuple[str, ...]
    section: str
    evidence: tuple[str, ...]
    rule: str = "primary"
    note: str = ""
    restated: tuple[str, ...] = ()
    topic: str = ""

    @property
    def text(self) -> str:
        """The quote as one string, fragments joined by " … "."""
        return " … ".join(self.quote)


@dataclass(frozen=True)
class Validation:
    """A row that is not a statement of the seed: ``kind`` is "solver validation", "baseline" or
    "precondition"; ``why`` says what it checks and why it is not counted."""

    id: str
    study: str
    kind: str
    why: str


@dataclass(frozen=True)
class Headline:
    """A claim's headline: ``verdict`` (one of :data:`STATUSES`), ``how`` (one sentence: which rows
    decided it), ``decisive`` (the ids of the rows that decided it) and ``present`` (the claim's
    evidence rows found in the audit, in the registry's order)."""

    verdict: str
    how: str
    decisive: tuple[str, ...]
    present: tuple[str, ...]


_F = "Mathematical Foundation"
_T = "Theoretical Results"
_E = "Experimental Validation"
_U = "Understanding Key Phenomena"
_M = "Common Misconceptions"

#: the seed's testable statements, in the order the seed states them
def _tf(*rows: str) -> tuple[str, ...]:
    """Grokking evidence: the seed's setting (a 2-layer MLP, study ``grokking``) first, then the same rows
    from Nanda et al.'s transformer setting (study ``grokking-transformer``, full audits only): support
    under the "primary" rule, a further part under "combine"."""
    return rows + tuple("grok-tf" + r[len("grok"):] for r in rows)


SEED_CLAIMS: tuple[SeedClaim, ...] = (
    SeedClaim(
        "master-equation",
        ("All training dynamics reduce to the **Fokker-Planck equation**:",
         "This is **exact** for SGD with Gaussian noise in the continuous-time limit."),
        f"{_F} › 1. The Master Equation", ("sgd-noise-isotropic",), topic="foundations",
        note="Langevin dynamics with isotropic Gaussian noise obeys this equation by a textbook theorem; the "
             "audit's Langevin-vs-Fokker–Planck rows (`master-equation-density`, `master-equation-mfpt`) check the "
             "two solvers against that theorem and are listed under Validation. For SGD the equation with one D "
             "needs isotropic mini-batch noise: `sgd-noise-isotropic` measures the shape of SGD's noise "
             "covariance on the digits MLP (batch-scaling's noise member)."),
    SeedClaim(
        "grok-near-c1", ("**Grokking occurs near C ≈ 1**: When signal and noise balance",),
        f"{_F} › 3. The Signal-to-Noise Consolidation Ratio", _tf("grok-near-c1"), topic="grokking",
        restated=("3. **Critical transition** (C ≈ 1): Barrier crossing becomes probable",),
        note="C at mid-transition (test accuracy 50 %) in the critical regime, per seed."),
    SeedClaim(
        "theorem1", ("For any probability distribution ρ(θ) over parameters:", "√Var[θ] · √Var[∇ℒ] ≥ D/2"),
        f"{_T} › Theorem 1: Variance-Gradient Uncertainty Relation", ("th1-any", "th1-gibbs"), topic="theorems",
        note="The claim is universal ('for any probability distribution'), so the row that tests distributions "
             "away from equilibrium decides; `th1-gibbs` (Gibbs ensembles only) supports."),
    SeedClaim(
        "theorem2-rate", ("The rate of escaping a local minimum over a barrier is:", "Γ = (ω₀/2π) · exp(-ΔE/D)"),
        f"{_T} › Theorem 2: Kramers Escape Rate (Noise-Assisted Barrier Crossing)",
        ("kramers-prefactor", "th2-kramers-seed-form", "kramers-seed-form"), topic="theorems",
        note="`kramers-prefactor` compares the seed's rate with the exact rate (quadrature and Fokker–Planck) over "
             "a sweep of ΔE/D; the closed-form check in theorems and the double-well simulation support it."),
    SeedClaim(
        "theorem2-exponential", ("Escape rate **exponentially increases** with noise D",),
        f"{_T} › Theorem 2: Kramers Escape Rate (Noise-Assisted Barrier Crossing)", ("kramers-exponent",),
        topic="theorems", restated=("Higher barriers require proportionally more noise",),
        note="The Arrhenius slope of ln Γ against 1/D is −ΔE."),
    SeedClaim(
        "theorem3", ("At equilibrium (t→∞), the distribution becomes:", "ρ*(θ) ∝ exp(-ℒ(θ)/D)"),
        f"{_T} › Theorem 3: Stationary Distribution (Gibbs Measure)",
        ("theorem3-gibbs", "th3-gibbs", "gibbs-double-well"), topic="theorems",
        note="`theorem3-gibbs` checks both the Fokker–Planck stationary state and the Langevin histogram; the KS "
             "tests of the theorems and double-well studies support it."),
    SeedClaim(
        "theorem4", ("Under strong convexity (λ_min > 0 for Hessian ∇²ℒ):",
                     "𝔼[ℒ(θ(t))] - ℒ* ≤ (ℒ₀ - ℒ*)·exp(-λ_min·t) + D·d/λ_min"),
        f"{_T} › Theorem 4: Convergence Rate", ("th4-convergence", "theorem4-bound", "theorem4-floor-form"),
        topic="theorems",
        note="The claim is for any strongly convex ℒ; `th4-convergence` tests quadratics with λ_min from below to "
             "above 2 (the true floor is D·d/2, so D·d/λ_min is a bound only for λ_min ≤ 2). `theorem4-bound` "
             "(λ_min = 0.5 only, where the bound is 4× the true floor by construction) and `theorem4-floor-form` "
             "(is D·d/λ_min the floor itself?) support."),
    SeedClaim(
        "theorem4-floor-d", ("2. **Error floor** ∝ D (irreducible noise-induced error)",),
        f"{_T} › Theorem 4: Convergence Rate", ("th4-floor-proportional-to-D",), topic="theorems",
        note="The stationary mean loss over D at several D, on a quadratic (∝ D exactly) and a strongly convex "
             "quartic; `theorem4-floor-form` tests the floor's value D·d/λ_min and is evidence for `theorem4`."),
    SeedClaim(
        "grok-c-below-1", ("2. Detect when C(t) drops below critical threshold (≈1)",
                           "3. Predict grokking occurs shortly after"),
        f"{_E} › 1. Grokking Prediction", _tf("grok-warn-seed-c-below-1"), topic="grokking",
        note="The 'C < 1' warning, armed like the baselines, must fire before grokking and not in the "
             "random-label control."),
    SeedClaim(
        "grok-epoch", ("| Grokking epoch | 2340 ± 50 | 2351 | 0.5% |",),
        f"{_E} › 1. Grokking Prediction", _tf("grok-predict-epoch"), topic="grokking",
        note="Leave-one-out prediction of the grokking epoch with the seed's method."),
    SeedClaim(
        "grok-c-pre", ("| Pre-transition C(t) | 8.2 | 8.7 | 6% |",),
        f"{_E} › 1. Grokking Prediction", _tf("grok-c-pre"), topic="grokking"),
    SeedClaim(
        "grok-c-post", ("| Post-transition C(t) | 0.9 | 0.85 | 6% |",),
        f"{_E} › 1. Grokking Prediction", _tf("grok-c-post"), topic="grokking"),
    SeedClaim(
        "grok-c-drop", ("**Key finding:** C(t) drops sharply ~200 epochs before grokking, providing early warning.",),
        f"{_E} › 1. Grokking Prediction", _tf("grok-c-drop-300", "grok-warn-seed-c-drop", "grok-c-vs-baselines"),
        rule="combine", topic="grokking",
        restated=("**Sharp drops in C(t)** predict imminent phase transitions",),
        note="Three parts: C falls sharply shortly before grokking (`grok-c-drop-300`); a C-drop rule armed like "
             "the baselines fires before grokking and not in the control (`grok-warn-seed-c-drop`); and the "
             "warning is early, i.e. earlier than what train accuracy, test loss or the weight norm already tell "
             "(`grok-c-vs-baselines`)."),
    SeedClaim(
        "dd-c-collapse", ("n ≈ d (interpolation threshold): C(t) collapses",
                          "n ≫ d (overparameterized regime): C(t) recovers"),
        f"{_E} › 2. Double Descent", ("dd-C-collapse",), topic="double descent",
        restated=("C(t) collapses → high sensitivity to noise", "C(t) recovers → stable generalization")),
    SeedClaim(
        "dd-numbers", ("| First peak | 1247 | 1203 | 3.7% |", "| Valley | 1580 | 1621 | 2.6% |",
                       "| Second descent | 2100 | 2089 | 0.5% |"),
        f"{_E} › 2. Double Descent", ("dd-seed-numbers",), topic="double descent"),
    SeedClaim(
        "dd-cifar", ("**Validation:** CIFAR-10 with ResNet, varying width",),
        f"{_E} › 2. Double Descent", ("dd-cifar-width",), topic="double descent"),
    SeedClaim(
        "lr-formula", ("α_opt ≈ 2D / λ_max",), f"{_E} › 3. Learning Rate Optimization", ("lr-seed-accuracy",),
        topic="learning rate", restated=("**Principled learning rate selection** from landscape geometry",),
        note="The formula's learning rate, with D read per coordinate and as the total variance, reaches the "
             "accuracy of a grid search."),
    SeedClaim(
        "lr-imagenet", ("| Grid search | 0.092 | 76.2% | 100 GPU-hrs |",
                        "| SHLD formula | 0.087 | 76.1% | 0.1 GPU-hrs |"),
        f"{_E} › 3. Learning Rate Optimization", ("lr-imagenet",), topic="learning rate"),
    SeedClaim(
        "lr-close-to-grid", ("| Difference | 5.4% |",), f"{_E} › 3. Learning Rate Optimization",
        ("lr-seed-lr-close",), topic="learning rate",
        note="The formula's rate against the grid's best rate, per task, under both readings of D."),
    SeedClaim(
        "lr-1000x", ("**1000× faster**",), f"{_E} › 3. Learning Rate Optimization", ("lr-speedup-1000x",),
        topic="learning rate"),
    SeedClaim(
        "escape-intervention", ("**Intervention:** At C(t) < 0.5, increase D by 10×",
                                "**With intervention**: Escapes within 100 steps (95% of runs)"),
        f"{_E} › 4. Noise-Assisted Escape",
        ("escape-short-rule-symmetric", "escape-short-rule-tilted", "escape-short-literal-symmetric",
         "escape-short-literal-tilted"), rule="by_reading", topic="escape",
        note="Readings: the stated rule (D × 10 for 10 steps, then restored) and the seed's code as written "
             "(D × 5, never restored), each on a symmetric and a tilted double well."),
    SeedClaim(
        "escape-stuck", ("**Without intervention**: Stuck for 5000+ steps (90% of runs)",),
        f"{_E} › 4. Noise-Assisted Escape", ("escape-stuck-symmetric", "escape-stuck-tilted"), rule="by_reading",
        topic="escape",
        note="The seed's 'double-well potential, starting near poor local minimum' is read as a symmetric and as "
             "a tilted double well."),
    SeedClaim(
        "escape-strategy", ("**Practical strategy:** Temporarily increase learning rate when C(t) drops",),
        f"{_E} › 4. Noise-Assisted Escape", ("escape-rule-vs-control-symmetric", "escape-rule-vs-control-tilted"),
        rule="by_reading", topic="escape",
        note="C-triggered boosts against the same noise budget at random times, on both readings of the well."),
    SeedClaim(
        "grok-lead-fraction", ("**Key prediction:** C(t) drops sharply 10-20% of total training time before grokking",),
        f"{_U} › 1. Grokking (Sudden Generalization)", _tf("grok-lead-fraction"), topic="grokking",
        note="The lead of the C-drop rule as a fraction of the training time before grokking. The run's whole "
             "length is set by how long training continues after grokking (a setting), so it is not the "
             "denominator."),
    SeedClaim(
        "grok-c-below-2", ("When C(t) < 2 and still decreasing → grokking likely imminent",),
        f"{_U} › 1. Grokking (Sudden Generalization)", _tf("grok-warn-c-below-2-decreasing"), topic="grokking"),
    SeedClaim(
        "dd-peak", ("**What it is:** Test error decreases, then increases (classical bias-variance), then decreases "
                    "again in overparameterized regime.", "**Peak** (interpolation threshold, n ≈ d):"),
        f"{_U} › 2. Double Descent", ("dd-peak-synthetic", "dd-peak-digits"), rule="combine",
        topic="double descent", note="The test-error peak at p ≈ n on each data set (random features)."),
    SeedClaim(
        "deff-one-over-b", ("D_eff ≈ α² · σ²_gradient / B",), f"{_U} › 3. Learning Rate Sensitivity",
        ("batch-noise-1-over-B",), topic="batch size",
        restated=("Batch size controls D: smaller batches → larger D",),
        note="The 1/B law of the mini-batch gradient noise (the α² factor is the definition of a step)."),
    SeedClaim(
        "batch-c-rises", ("**Small batch (B ≈ 32):**", "C(t) stays low longer", "**Large batch (B ≈ 4096):**",
                          "C(t) rises quickly"),
        f"{_U} › 4. Batch Size Effects", ("batch-c-rises",), topic="batch size",
        note="C along training at matched progress, not at one θ (where C ∝ B by definition)."),
    SeedClaim(
        "sqrt-b-rule",
        ("**Practical rule:**", "α ∝ √B  (linear scaling)", "Maintains constant D_eff across batch sizes."),
        f"{_U} › 4. Batch Size Effects", ("batch-sqrt-keeps-deff", "batch-sqrt-vs-linear"), topic="batch size",
        note="The claim is that α ∝ √B keeps D_eff constant (`batch-sqrt-keeps-deff`); whether it also keeps the "
             "learning curves closer than α ∝ B (`batch-sqrt-vs-linear`) supports."),
    SeedClaim(
        "grok-predictable", ("It's predictable from C(t) dynamics and occurs when:",
                             "Memorized solution becomes unstable (C drops)"),
        f'{_M} › ❌ "Grokking is mysterious/unexplainable"', _tf("grok-control"), topic="grokking",
        note="If C drops as much in a random-label control (memorisation, no grokking), the drop does not "
             "predict grokking."),
)

_PRE = "precondition"
_SOLVER = "solver validation"
_BASE = "baseline"

#: rows that test no statement of the seed: shown in the report's Validation table, not counted in its totals
VALIDATIONS: tuple[Validation, ...] = (
    Validation("kramers-langer", "kramers", _BASE,
               "the corrected Kramers–Langer prefactor, not the seed's form: a reference to compare the seed's "
               "rate with"),
    Validation("master-equation-mfpt", "kramers", _SOLVER,
               "Langevin ensemble against Fokker–Planck mean first-passage times: the two solvers agree with a "
               "textbook identity (Langevin with isotropic Gaussian noise obeys the Fokker–Planck equation)"),
    Validation("fp-solver-vs-exact", "kramers", _SOLVER,
               "the Fokker–Planck solver's passage times and spectral gap against exact quadrature"),
    Validation("master-equation-density", "fp-vs-langevin", _SOLVER,
               "Langevin histograms against the Fokker–Planck density over time (1-D and 2-D): both solvers "
               "against a textbook identity"),
    Validation("grok-occurs", "grokking", _PRE,
               "the setting groks at all (test accuracy 95 % long after train accuracy 99 %): without a "
               "transition the grokking claims cannot be tested; grokking itself is Power et al.'s finding"),
    Validation("grok-warn-test-loss-onset", "grokking", _BASE, "a warning from the test loss, to compare C with"),
    Validation("grok-warn-weight-norm-drop", "grokking", _BASE, "a warning from the weight norm, to compare C with"),
    Validation("grok-warn-memorisation", "grokking", _BASE,
               "a warning from train accuracy alone (memorisation), to compare C with"),
    Validation("grok-tf-occurs", "grokking-transformer", _PRE,
               "the setting groks at all (test accuracy 95 % long after train accuracy 99 %): without a "
               "transition the grokking claims cannot be tested; grokking itself is Power et al.'s finding"),
    Validation("grok-tf-warn-test-loss-onset", "grokking-transformer", _BASE,
               "a warning from the test loss, to compare C with"),
    Validation("grok-tf-warn-weight-norm-drop", "grokking-transformer", _BASE,
               "a warning from the weight norm, to compare C with"),
    Validation("grok-tf-warn-memorisation", "grokking-transformer", _BASE,
               "a warning from train accuracy alone (memorisation), to compare C with"),
    Validation("lr-mccandlish-accuracy", "lr-selection", _BASE,
               "McCandlish et al.'s critical-batch learning rate, to compare the seed's formula with"),
    Validation("lr-two-over-lambda-accuracy", "lr-selection", _BASE,
               "the stability edge 2/λ_max, to compare the seed's formula with"),
    Validation("lr-range-test-accuracy", "lr-selection", _BASE,
               "Smith's learning-rate range test, to compare the seed's formula with"),
)

#: claim id → claim
CLAIMS_BY_ID: dict[str, SeedClaim] = {c.id: c for c in SEED_CLAIMS}
#: row id → the id of the seed claim it is evidence for
EVIDENCE_OF: dict[str, str] = {row: c.id for c in SEED_CLAIMS for row in c.evidence}
#: row id → its validation record
VALIDATION_BY_ID: dict[str, Validation] = {v.id: v for v in VALIDATIONS}
#: every row id the studies write (with their default settings)
EXPECTED_ROW_IDS: frozenset[str] = frozenset(EVIDENCE_OF) | frozenset(VALIDATION_BY_ID)


def classify(row_id: str) -> tuple[str, str] | None:
    """``("seed", claim_id)`` for an evidence row, ``("validation", kind)`` for a validation row, None for a
    row the registry does not know (the report lists those apart, so a new row is seen, not lost)."""
    if row_id in EVIDENCE_OF:
        return "seed", EVIDENCE_OF[row_id]
    if row_id in VALIDATION_BY_ID:
        return "validation", VALIDATION_BY_ID[row_id].kind
    return None


def headline(claim: SeedClaim | str, verdicts: Mapping[str, str]) -> Headline:
    """The headline verdict of ``claim`` (a :class:`SeedClaim` or its id) from ``verdicts`` (row id → verdict
    of the rows in the audit; rows of other claims are ignored), by the claim's ``rule`` (:data:`RULES`)."""
    c = CLAIMS_BY_ID[claim] if isinstance(claim, str) else claim
    for rid in c.evidence:
        if rid in verdicts and verdicts[rid] not in VERDICTS:
            raise ValueError(f"`verdicts[{rid!r}]` must be one of {list(VERDICTS)}, got {verdicts[rid]!r}")
    present = tuple(r for r in c.evidence if r in verdicts)
    if not c.evidence:
        return Headline(NO_STUDY, "no study of SHLD tests this claim", (), ())
    if not present:
        return Headline(NOT_RUN, "none of its evidence rows is in this audit (" + ", ".join(c.evidence) + ")",
                        (), ())
    if c.rule == "primary":
        first = present[0]
        how = (f"primary row {first}" if first == c.evidence[0]
               else f"{first}: the primary row {c.evidence[0]} is not in this audit")
        return Headline(verdicts[first], how, (first,), present)
    parts = {r: verdicts[r] for r in present}
    missing = [r for r in c.evidence if r not in verdicts]
    tail = f"; not in this audit: {', '.join(missing)}" if missing else ""
    n = f"{len(present)} row{'s' * (len(present) != 1)}"
    if c.rule == "combine":
        return Headline(combine(parts.values()), f"combined over {n}{tail}", present, present)
    if c.rule == "by_reading":
        return Headline(by_reading(parts), f"by reading over {n}{tail}", present, present)
    raise ValueError(f"claim {c.id!r}: `rule` must be one of {list(RULES)}, got {c.rule!r}")


def claims_table(rows: Iterable[Mapping]) -> list[tuple[SeedClaim, Headline]]:
    """Every seed claim with its headline, from an audit's rows (dicts with ``id`` and ``verdict``). A row id
    that occurs in several studies would be ambiguous: the first one counts."""
    verdicts: dict[str, str] = {}
    for r in rows:
        verdicts.setdefault(str(r["id"]), str(r["verdict"]))
    return [(c, headline(c, verdicts)) for c in SEED_CLAIMS]


def _check_registry() -> None:
    """Consistency of the module's own data (run on import: a broken registry fails loudly)."""
    ids = [c.id for c in SEED_CLAIMS]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate seed claim ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    rows = [r for c in SEED_CLAIMS for r in c.evidence]
    if len(set(rows)) != len(rows):
        raise ValueError(f"rows that are evidence for two claims: {sorted({r for r in rows if rows.count(r) > 1})}")
    both = set(rows) & set(VALIDATION_BY_ID)
    if both or len(VALIDATION_BY_ID) != len(VALIDATIONS):
        raise ValueError(f"rows both evidence and validation, or listed twice as validation: {sorted(both)}")
    for c in SEED_CLAIMS:
        if c.rule not in RULES:
            raise ValueError(f"claim {c.id!r}: `rule` must be one of {list(RULES)}, got {c.rule!r}")
        if not c.quote or not all(isinstance(q, str) and q.strip() for q in c.quote):
            raise ValueError(f"claim {c.id!r}: `quote` must be non-empty fragments")
        if c.rule != "primary" and len(c.evidence) < 2:
            raise ValueError(f"claim {c.id!r}: rule {c.rule!r} needs at least two evidence rows")


_check_registry()

__all__ = ["SeedClaim", "Validation", "Headline", "SEED_CLAIMS", "VALIDATIONS", "CLAIMS_BY_ID", "EVIDENCE_OF",
           "VALIDATION_BY_ID", "EXPECTED_ROW_IDS", "RULES", "NOT_RUN", "NO_STUDY", "STATUSES", "SEED_SOURCE",
           "classify", "headline", "claims_table"]
