"""Grokking on modular arithmetic, with the consolidation ratio C(t) as an early-warning signal.

Seed claim (SHLD.md, "Experimental Validation 1"): on (a + b) mod 113 with a 2-layer MLP,
"C(t) drops sharply ~200 epochs before grokking", C crosses ≈ 1 around the transition, with
pre-/post-transition C of 8.7 / 0.85, and "when C(t) < 2 and still decreasing → grokking likely
imminent".

What runs
---------
``n_seeds`` independent runs (own data split, initialisation and data order, each from
``member_seed(seed, 0, i)``) and one **random-label control** (``member_seed(seed, 1, 0)``: the
training labels are replaced by uniform random labels, so nothing can generalise). Each run lives
in its own sub-folder (``seed_0`` …, ``control``) with its own ``metrics.csv``, checkpoint and
figure, and is executed by the module-level :func:`run_member` through
:func:`shld.experiments.executor.sweep_map` (serial or worker processes, same results).

Every epoch records accuracy and loss on train and test, ‖θ‖ and the monitor's quantities for
the step taken at that epoch (see :mod:`shld.experiments._torch_train`); the C series used by the
rules is the monitor's smoothed C (a ratio of exponential averages of ‖G‖²_unbiased and tr Σ̂/B).
A run stops ``post_epochs`` after test accuracy first reaches 95 % (or at ``epochs``).

Events (first epoch at which …)
-------------------------------
``t_train99``: train accuracy ≥ 99 %; ``t_test50`` / ``t_test95``: test accuracy ≥ 50 % / 95 %.
"Grokking" is ``t_test95``.

Early-warning rules
-------------------
All rules are causal (they use the series up to the current epoch only) and are **armed at
t_train99** (before memorisation the question "will it generalise?" does not arise; for the
control, which may never reach 99 % on random labels, the rules are armed at the median
``t_train99`` of the real seeds when it never does). A rule's **lead time** is
``t_test95 − t_fire`` (positive: it warned before grokking).

* ``seed_c_below_1`` — the seed's method: C < 1 ("detect when C(t) drops below the critical
  threshold (≈ 1)").
* ``seed_c_drop`` — the seed's "sharp drop": C ≤ ½·max C over the previous 200 epochs.
* ``c_below_2_decreasing`` — the seed's practitioner rule: C < 2 and C(e) < C(e − 20).
* ``test_loss_onset`` (baseline) — test loss ≤ 90 % of its maximum since arming.
* ``weight_norm_drop`` (baseline) — ‖θ‖ ≤ 90 % of its maximum since arming.

The verdict rules (constants ``RULE_*`` below) were written before any run.

Second setting
--------------
Study ``grokking-transformer`` runs the same members, rules and rows (ids ``grok-tf-…``) in Nanda et
al. (2023)'s setting: a one-layer transformer on ``a b =`` with p = 113, 30 % training pairs, AdamW
with weight decay 1, β₂ = 0.98, full batch (learning rate 3e-3, 3× theirs: see
:data:`TRANSFORMER_LR`). Full audits only. The seed's rows are decided by its own setting (the MLP);
the transformer's rows are shown beside them (a part of the claim where a claim combines rows:
:mod:`shld.claims_registry`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shld._validation import check_choice, check_int, check_positive
from shld.claims import FAILS, HOLDS, NOT_TESTABLE, PARTLY, claim_row, k_of_n
from shld.experiments.registry import register
from shld.experiments.study import Member, Study, Summary
from shld.observables.consolidation import regime_label
from shld.observables.early_warning import (
    BASELINES,
    C2_THRESHOLD,
    C_RULES,
    SEED_THRESHOLD,
    WARNING_RULES,
    bootstrap_mean_interval,
    c_drop_within,
    first_epoch,
    loo_prediction_errors,
    mean_se,
    rule_fires,
)
from shld.plotting import pyplot, save_figure
from shld.runs import RunFolder
from shld.seeds import member_seed

# --------------------------------------------------------------------------------------------
# rules (fixed before any run)
# --------------------------------------------------------------------------------------------
TRAIN_ARM = 0.99
TEST_HALF = 0.50
TEST_GROK = 0.95

RULE_GROKS = ("holds if test accuracy reaches 95 % after train accuracy reached 99 % in at least "
              "⌈2n/3⌉ of the n seeds; fails if in none; partly otherwise.")
RULE_WARNING = ("All rules (C and baselines) are armed when train accuracy first reaches 99 % and fire on a "
                "change after arming (a condition already true then must first become false; "
                "shld.observables.early_warning). Lead times are reported as mean ± s.e. over seeds with "
                "a 95 % percentile bootstrap interval of the mean (seeds resampled). "
                "holds if the rule fires before test accuracy reaches 95 % "
                "(lead > 0) in at least "
                "⌈2n/3⌉ of n seeds AND does not fire in the random-label control; partly if it fires "
                "before grokking in at least one seed (or in ⌈2n/3⌉ but also in the control); fails if it "
                "never fires before grokking. Without a control run (--control false) the specificity is "
                "untested and the verdict is at most partly.")
RULE_DROP300 = ("holds if smoothed C falls by ≥ 50 % (some later epoch ≤ ½ of an earlier one) within the "
                "300 epochs before test accuracy reaches 95 %, in at least ⌈2n/3⌉ of n seeds; fails if "
                "in none; partly otherwise.")
RULE_C_VS_BASELINE = ("holds if the best C rule's mean lead exceeds the best baseline's mean lead by more "
                      "than twice their combined standard error; fails if it is smaller by more than that; "
                      "partly otherwise; fails if no C rule fires before grokking in ⌈2n/3⌉ seeds. The baselines "
                      "include memorisation (train accuracy alone: lead = t_test95 − t_train99).")
RULE_REGIME = ("holds if the measured C lies in the same regime (shld.observables.consolidation."
               "REGIME_CUTS: ≥10 deterministic, 2-10 transitional, 0.5-2 critical, <0.5 diffusive) as the "
               "seed's value in at least ⌈2n/3⌉ of n seeds; fails if in none; partly otherwise.")
RULE_NEAR_C1 = ("holds if smoothed C at t_test50 (mid-transition) is in the critical regime "
                "0.5 ≤ C < 2 in at least ⌈2n/3⌉ of n seeds; fails if in none; partly otherwise.")
RULE_PREDICT = ("Leave-one-out prediction with the seed's method: predicted t_grok(i) = t_fire(i) of "
                "'C < 1' + mean lead of the other seeds. holds if the mean |relative error| ≤ 5 %; "
                "partly if ≤ 20 %; fails if larger or if the rule fires in fewer than 2 seeds.")
RULE_CONTROL = ("Judged on the C rules that warn: those that fire before grokking in at least ⌈2n/3⌉ of n "
                "seeds (a rule that does not warn in the seeds has no specificity to test). holds if none of "
                "them fires in the random-label control (C's warning is specific to generalisation); fails if "
                "all of them fire; partly otherwise; not testable if no C rule warns. The control is matched: "
                "armed like the seeds and judged over the same length (its series is cut at the median of the "
                "seeds' last epochs).")
RULE_LEAD_FRACTION = ("The seed's 'sharp drop' rule (seed_c_drop), armed like the others: its lead as a fraction "
                      "of the training time before grokking, (t_test95 − t_fire) / t_test95. holds if the "
                      "fraction lies in [0.10, 0.20] in at least ⌈2n/3⌉ of n seeds; fails if in none; partly "
                      "otherwise. (The run's whole length is set by post_epochs, a setting, so it is not the "
                      "denominator.)")
LEAD_FRACTION = (0.10, 0.20)

#: Nanda et al.'s rate is 1e-3, with grokking after about 10⁴ full-batch epochs: over an hour of one core
#: per seed here. At 3e-3 an exploratory run (not an audit seed) of this model grokked at epoch ≈ 1650; the
#: cap leaves room for slower seeds. The rate sets when grokking happens, which no seed claim is about.
TRANSFORMER_LR = 3e-3
TRANSFORMER_EPOCHS = 2500

RULE_NO_GROK = ("Rows about the transition (warnings, C before/at/after it, prediction) are 'not testable "
                "here' when no seed groks: there is no transition to warn about.")


def _need(n: int) -> int:
    return max(1, math.ceil(2 * n / 3))


def events(cols: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The accuracy events of one run from its metrics columns."""
    e = cols["epoch"]
    return {"t_train99": first_epoch(e, cols["train_acc"] >= TRAIN_ARM),
            "t_test50": first_epoch(e, cols["test_acc"] >= TEST_HALF),
            "t_test95": first_epoch(e, cols["test_acc"] >= TEST_GROK)}


def warning_verdict(leads: list[float | None], control_fired: bool | None) -> str:
    """Verdict of one warning rule (see ``RULE_WARNING``); ``leads`` per seed (None: no fire or no grok);
    ``control_fired`` None when no control was run (then at most partly: specificity is untested)."""
    n = len(leads)
    before = sum(1 for x in leads if x is not None and x > 0)
    if before == 0:
        return FAILS.value
    if before >= _need(n) and control_fired is False:
        return HOLDS.value
    return PARTLY.value


def regime_verdict(values: list[float], seed_value: float) -> str:
    """Same-regime-as-the-seed verdict (``RULE_REGIME``)."""
    target = regime_label(seed_value)
    k = sum(1 for v in values if v is not None and np.isfinite(v) and regime_label(v) == target)
    return k_of_n(k, max(len(values), 1), _need(len(values)))


def c_vs_baseline_verdict(c_leads: dict[str, list], base_leads: dict[str, list]) -> tuple[str, str]:
    """``RULE_C_VS_BASELINE``: returns (verdict, measured text)."""
    def best(d):
        stats = {k: mean_se([x for x in v if x is not None]) for k, v in d.items()}
        stats = {k: s for k, s in stats.items() if np.isfinite(s[0])}
        if not stats:
            return None, (math.nan, math.nan)
        k = max(stats, key=lambda k: stats[k][0])
        return k, stats[k]

    n = len(next(iter(c_leads.values()))) if c_leads else 0
    ok = {k: v for k, v in c_leads.items() if sum(1 for x in v if x is not None and x > 0) >= _need(n)}
    kc, (mc, sc) = best(ok)
    kb, (mb, sb) = best(base_leads)
    if kc is None:
        return FAILS.value, "no C rule fires before grokking in enough seeds"
    if kb is None:
        return HOLDS.value, f"best C rule {kc}: lead {mc:.0f} epochs; no baseline fires"
    se = math.sqrt(np.nansum([sc ** 2, sb ** 2])) if np.isfinite(sc) or np.isfinite(sb) else 0.0
    diff = mc - mb
    text = (f"best C rule {kc}: {mc:.0f} ± {sc:.0f}; best baseline {kb}: {mb:.0f} ± {sb:.0f} epochs; "
            f"difference {diff:.0f} ± {se:.0f}")
    if diff > 2 * se:
        return HOLDS.value, text
    if diff < -2 * se:
        return FAILS.value, text
    return PARTLY.value, text


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------
@dataclass
class GrokkingParams:
    p: int = field(default=113, metadata={"help": "prime modulus"})
    op: str = field(default="add", metadata={"help": "operation", "choices": ["add", "sub", "mul", "div"]})
    train_fraction: float = field(default=0.4, metadata={"help": "fraction of all pairs used for training"})
    model: str = field(default="quadratic", metadata={"help": "quadratic (one-hot MLP, x² activation), "
                                                              "embed (embedding + ReLU MLP) or transformer "
                                                              "(Nanda et al.'s one layer; width = d_model)",
                                                      "choices": ["quadratic", "embed", "transformer"]})
    width: int = field(default=256, metadata={"help": "hidden units"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw, adam or sgd",
                                                      "choices": ["adamw", "adam", "sgd"]})
    lr: float = field(default=3e-3, metadata={"help": "learning rate"})
    beta2: float = field(default=0.999, metadata={"help": "Adam's second-moment decay β₂ (adam, adamw)"})
    weight_decay: float = field(default=1.0, metadata={"help": "weight decay (decoupled for adamw)"})
    batch_size: int = field(default=0, metadata={"help": "mini-batch size; 0 = full batch"})
    epochs: int = field(default=3000, metadata={"help": "maximum epochs"})
    post_epochs: int = field(default=200,
                             metadata={"help": "epochs to continue after test accuracy first reaches 0.95"})
    n_seeds: int = field(default=3, metadata={"help": "independent seeds (≥ 3 for lead-time errors)"})
    control: bool = field(default=True, metadata={"help": "also run the random-label control"})
    control_epochs: int = field(default=0, metadata={"help": "epochs of the control (it is judged over the "
                                                             "median of the seeds' lengths); 0 = epochs"})
    lambda_every: int = field(default=0, metadata={"help": "λ_max (Lanczos) every k epochs; 0 = off"})
    monitor: bool = field(default=True, metadata={"help": "run the SHLD monitor (off: timing baseline; "
                                                          "C-based rows become NaN)"})
    checkpoint_every: int = field(default=50, metadata={"help": "checkpoint every k epochs"})
    seed: int = field(default=0, metadata={"help": "root seed"})


#: parameter overrides used by ``shld reproduce --quick`` / ``--full``
AUDIT = {
    "quick": {"p": 59, "train_fraction": 0.5, "width": 128, "epochs": 1000, "post_epochs": 100,
              "n_seeds": 3, "control": True},
    "full": {"p": 113, "train_fraction": 0.4, "width": 256, "epochs": 3000, "post_epochs": 300,
             "n_seeds": 5, "control": True},
}


def _check(params: GrokkingParams) -> None:
    from shld.experiments.modular import _is_prime

    if not _is_prime(check_int("p", params.p, minimum=3)):
        raise ValueError(f"`p` must be a prime >= 3, got {params.p}")
    if not check_positive("train_fraction", params.train_fraction) < 1.0:
        raise ValueError(f"`train_fraction` must be in (0, 1), got {params.train_fraction!r}")
    check_int("width", params.width, minimum=1)
    if params.model == "transformer" and params.width % 4:
        raise ValueError(f"`width` (the transformer's d_model) must be a multiple of its 4 heads, got {params.width}")
    check_choice("op", params.op, ["add", "sub", "mul", "div"])
    check_choice("model", params.model, ["quadratic", "embed", "transformer"])
    check_choice("optimizer", params.optimizer, ["adamw", "adam", "sgd"])
    check_positive("lr", params.lr)
    if not 0.0 <= params.beta2 < 1.0:
        raise ValueError(f"`beta2` must be in [0, 1), got {params.beta2!r}")
    check_positive("weight_decay", params.weight_decay, allow_zero=True)
    check_int("batch_size", params.batch_size, minimum=0)
    check_int("epochs", params.epochs, minimum=1)
    check_int("control_epochs", params.control_epochs, minimum=0)
    check_int("post_epochs", params.post_epochs, minimum=0)
    check_int("n_seeds", params.n_seeds, minimum=1)
    check_int("lambda_every", params.lambda_every, minimum=0)
    check_int("checkpoint_every", params.checkpoint_every, minimum=1)


# --------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------
def _make_optimizer(params: GrokkingParams, model):
    import torch

    if params.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay,
                                 betas=(0.9, params.beta2))
    if params.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay,
                                betas=(0.9, params.beta2))
    return torch.optim.SGD(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)


def make_monitor(model, lr: float, lambda_every: int = 0):
    """The training-loop hook that runs ``shld.torch``'s monitor on every epoch's first step."""
    from shld.experiments._torch_monitor import monitor_hook

    return monitor_hook(model, lr=lr, lambda_every=lambda_every)


#: the metrics columns a member's result carries (what the analysis and the figures read)
RESULT_COLUMNS = ("epoch", "train_acc", "test_acc", "train_loss", "test_loss", "weight_norm", "C_smoothed",
                  "C_unbiased")


def train_member(params: GrokkingParams, key: tuple[int, ...], control: bool, run: RunFolder, *,
                 resume: bool, progress: bool) -> dict:
    """One grokking run (a seed, or the random-label control) into ``run``; returns its result: the
    accuracy events and the metrics columns of :data:`RESULT_COLUMNS`."""
    import torch

    from shld.experiments._torch_train import Data, one_thread, train
    from shld.experiments.modular import make_model, modular_dataset, split_indices
    from shld.seeds import torch_generator

    seq = member_seed(params.seed, *key)
    s_data, s_init, s_order, s_labels = seq.spawn(4)
    x, y = modular_dataset(params.p, params.op)
    tr, te = split_indices(len(y), params.train_fraction, torch_generator(s_data))
    y_train = y[tr]
    if control:
        y_train = torch.randint(0, params.p, y_train.shape, generator=torch_generator(s_labels))
    data = Data(x[tr], y_train, x[te], y[te])
    with one_thread():
        model = make_model(params.model, params.p, params.width, generator=torch_generator(s_init))
        opt = _make_optimizer(params, model)
        if params.monitor:
            monitor = make_monitor(model, params.lr, params.lambda_every)
        else:
            from shld.experiments._torch_train import MonitorHook

            monitor = MonitorHook()
        state = {"t95": None}

        def stop(row):
            if state["t95"] is None and row["test_acc"] >= TEST_GROK:
                state["t95"] = row["epoch"]
            return state["t95"] is not None and row["epoch"] >= state["t95"] + params.post_epochs

        label = "control" if control else f"seed {key[-1]}"
        epochs = params.control_epochs if control and params.control_epochs else params.epochs
        cols = train(model, opt, data, epochs=epochs, run=run, generator=torch_generator(s_order),
                     batch_size=params.batch_size or None, monitor=monitor,
                     checkpoint_every=params.checkpoint_every, resume=resume, progress=progress,
                     desc=f"grokking {label}", stop=stop)
    return {"control": control, "key": list(key), **events(cols), "epochs_run": float(cols["epoch"][-1]),
            "n_train": data.n_train, "final_train_acc": float(cols["train_acc"][-1]),
            "final_test_acc": float(cols["test_acc"][-1]),
            "cols": {k: np.asarray(cols[k], float) for k in RESULT_COLUMNS if k in cols}}


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
C_COLUMN = "C_smoothed"


def plot_run(cols, ev, fires, path: Path, title: str = "") -> Path:
    """Accuracy, loss and C(t) on shared epoch axes with the events (and rule firings) marked."""
    plt = pyplot()

    e = cols["epoch"]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    ax = axes[0]
    ax.plot(e, cols["train_acc"], label="train")
    ax.plot(e, cols["test_acc"], label="test")
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right")
    ax = axes[1]
    ax.semilogy(e, cols["train_loss"], label="train")
    ax.semilogy(e, cols["test_loss"], label="test")
    ax.set_ylabel("cross-entropy")
    ax.legend(loc="upper right")
    ax = axes[2]
    if C_COLUMN in cols:
        ax.plot(e, cols[C_COLUMN], label="C (smoothed)")
        if "C_unbiased" in cols:
            ax.plot(e, cols["C_unbiased"], alpha=0.3, lw=0.7, label="C (unbiased, per step)")
        for level, ls in ((SEED_THRESHOLD, "--"), (C2_THRESHOLD, ":")):
            ax.axhline(level, color="k", ls=ls, lw=0.8)
        ax.set_yscale("symlog", linthresh=0.1)  # C_unbiased can be negative
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("C(t)")
    ax.set_xlabel("epoch")
    colors = {"t_train99": "tab:blue", "t_test50": "tab:orange", "t_test95": "tab:green"}
    for name, t in ev.items():
        if t is not None and name in colors:
            for a in axes:
                a.axvline(t, color=colors[name], lw=0.8, ls="--")
            axes[0].text(t, 0.02, name, rotation=90, fontsize=7, color=colors[name], va="bottom")
    if fires:
        for i, (name, t) in enumerate(fires.items()):
            if t is not None:
                axes[2].axvline(t, color=f"C{3 + i}", lw=0.8, alpha=0.8)
                axes[2].text(t, 0.05 + 0.12 * i, name, rotation=90, fontsize=6, color=f"C{3 + i}",
                             transform=axes[2].get_xaxis_transform())
    axes[0].set_title(title)
    fig.tight_layout()
    save_figure(fig, path, tight=False, dpi=90)
    plt.close(fig)
    return path


def plot_overview(members: list[tuple[str, dict]], path: Path) -> Path:
    """All runs' test accuracy and smoothed C on shared axes."""
    plt = pyplot()

    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for i, (label, cols) in enumerate(members):
        ls = ":" if label == "control" else "-"
        axes[0].plot(cols["epoch"], cols["test_acc"], ls=ls, color=f"C{i}", label=label)
        if C_COLUMN in cols:
            axes[1].plot(cols["epoch"], cols[C_COLUMN], ls=ls, color=f"C{i}")
    axes[1].set_yscale("symlog", linthresh=0.1)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    axes[1].axhline(SEED_THRESHOLD, color="k", ls="--", lw=0.8)
    axes[1].axhline(C2_THRESHOLD, color="k", ls=":", lw=0.8)
    axes[1].set_ylabel("C (smoothed)")
    axes[1].set_xlabel("epoch")
    fig.tight_layout()
    save_figure(fig, path, tight=False, dpi=90)
    plt.close(fig)
    return path


def plot_leads(stats: dict[str, tuple[float, float]], path: Path) -> Path:
    plt = pyplot()

    names = list(stats)
    m = [stats[k][0] for k in names]
    s = [0.0 if not np.isfinite(stats[k][1]) else stats[k][1] for k in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(range(len(names)), np.nan_to_num(m), xerr=s, color=["C0"] * 3 + ["C7"] * (len(names) - 3))
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("lead time before test acc 95 % (epochs, mean ± s.e.)")
    fig.tight_layout()
    save_figure(fig, path, tight=False, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------
def _fmt_lead(m, s):
    if not np.isfinite(m):
        return "n/a"
    return f"{m:.0f} ± {s:.0f}" if np.isfinite(s) else f"{m:.0f}"


class GrokkingStudy(Study):
    name = "grokking"
    help = ("Grokking on (a∘b) mod p: C(t) early-warning rules vs baselines over seeds, with a random-label "
            "control.")
    Params = GrokkingParams
    audit = AUDIT

    def validate(self, params: GrokkingParams) -> None:
        _check(params)

    def members(self, params, done):
        out = [Member(f"seed_{i}", {"key": [0, i], "control": False}, folder=f"seed_{i}")
               for i in range(params.n_seeds)]
        if params.control:
            out.append(Member("control", {"key": [1, 0], "control": True}, folder="control"))
        return out

    def run_member(self, params, member, ctx) -> dict:
        config = {"experiment": "grokking-member", "key": member.task["key"], "control": member.task["control"],
                  **dataclasses.asdict(params)}
        return train_member(params, tuple(member.task["key"]), member.task["control"], ctx.run_folder(config),
                            resume=ctx.resume, progress=ctx.progress)

    #: the first word of every row id this study writes
    row_prefix = "grok"

    def analyse(self, params, results) -> Summary:
        return Summary(*_analyse(params, results, self.row_prefix))

    def figures(self, params, results, summary, figs) -> None:
        run_path = figs.parent
        members_cols = []
        for m in self.members(params, results):
            r = results[m.key]
            cols = r["cols"]
            if m.task["control"]:
                ctrl = summary["control"]
                members_cols.append(("control", cols))
                plot_run(cols, ctrl["events"], ctrl["fires"], run_path / m.folder / "figures" / "curves.png",
                         title=f"grokking p={params.p} — random-label control")
            else:
                s = summary["per_seed"][m.task["key"][-1]]
                members_cols.append((f"seed {m.task['key'][-1]}", cols))
                plot_run(cols, s["events"], s["fires"], run_path / m.folder / "figures" / "curves.png",
                         title=f"grokking p={params.p} {params.op} — seed {m.task['key'][-1]}")
        plot_overview(members_cols, figs / "grokking.png")
        plot_leads({k: (v["mean"], v["se"]) for k, v in summary["lead_times"].items()}, figs / "lead_times.png")


FIG_OVERVIEW = "figures/grokking.png"
FIG_LEADS = "figures/lead_times.png"


def _series(cols: dict, name: str) -> np.ndarray:
    return cols.get(name, np.full_like(cols["epoch"], np.nan))


def _truncate(cols: dict, last_epoch: float) -> dict:
    """The metrics columns up to and including ``last_epoch``."""
    keep = np.asarray(cols["epoch"]) <= last_epoch
    return {k: np.asarray(v)[keep] for k, v in cols.items()}


def _analyse(params: GrokkingParams, results: dict, prefix: str = "grok") -> tuple[list[dict], dict]:
    """Rule firings, lead times and claims rows from the members' results (a pure function). Row ids
    start with ``prefix`` (one study per setting, so that every row id names one setting)."""
    seeds = [results[f"seed_{i}"] for i in range(params.n_seeds)]
    n = len(seeds)
    per_seed = []
    for r in seeds:
        cols = r["cols"]
        C = _series(cols, C_COLUMN)
        fires = rule_fires(cols["epoch"], C, cols["test_loss"], cols["weight_norm"], r["t_train99"])
        t95 = r["t_test95"]
        leads = {k: (t95 - f if (f is not None and t95 is not None) else None) for k, f in fires.items()}
        e = cols["epoch"]
        pre = post = at50 = None
        if r["t_test50"] is not None:
            lo = r["t_train99"] if r["t_train99"] is not None and r["t_train99"] < r["t_test50"] \
                else r["t_test50"] - 50
            sel = (e >= lo) & (e < r["t_test50"]) & np.isfinite(C)
            pre = float(np.median(C[sel])) if sel.any() else None
            at = np.flatnonzero(e == r["t_test50"])
            at50 = float(C[at[0]]) if at.size and np.isfinite(C[at[0]]) else None
        if t95 is not None:
            sel = (e >= t95) & np.isfinite(C)
            post = float(np.median(C[sel])) if sel.any() else None
        per_seed.append({"events": {k: r[k] for k in ("t_train99", "t_test50", "t_test95")}, "fires": fires,
                         "leads": leads, "C_pre": pre, "C_post": post, "C_at_test50": at50,
                         "drop300": c_drop_within(e, C, t95)})
    ctrl = None
    if params.control:
        r = results["control"]
        # matched length: the control is judged over the epochs a seed typically ran (or all of its own
        # when it ran fewer: the row then says so)
        seeds_median = float(np.median([s["epochs_run"] for s in seeds]))
        matched = min(seeds_median, r["epochs_run"])
        cols = _truncate(r["cols"], matched)
        C = _series(cols, C_COLUMN)
        ev = events(cols)
        arms = [s["events"]["t_train99"] for s in per_seed if s["events"]["t_train99"] is not None]
        arm = ev["t_train99"] if ev["t_train99"] is not None else (float(np.median(arms)) if arms else None)
        fires = rule_fires(cols["epoch"], C, cols["test_loss"], cols["weight_norm"], arm)
        finite = C[np.isfinite(C)]
        after = (cols["epoch"] >= arm) & np.isfinite(C) if arm is not None else np.zeros(C.shape, bool)
        ctrl = {"events": ev, "arm": arm, "epochs_judged": matched, "epochs_run": r["epochs_run"],
                "seeds_median_epochs": seeds_median,
                "fires": fires, "final_test_acc": float(cols["test_acc"][-1]),
                "final_train_acc": float(cols["train_acc"][-1]),
                "C_final": float(finite[-1]) if finite.size else None,
                "C_median_after_arm": float(np.median(C[after])) if after.any() else None}

    lead_stats = {k: mean_se([s["leads"][k] for s in per_seed]) for k in WARNING_RULES}
    boot_rng = np.random.default_rng(member_seed(params.seed, 2))       # keys (0, i), (1, 0) are the members'
    lead_boot = {k: bootstrap_mean_interval([s["leads"][k] for s in per_seed], boot_rng) for k in WARNING_RULES}
    fo, fl = FIG_OVERVIEW, FIG_LEADS
    ctrl_fired = {k: None if ctrl is None else ctrl["fires"][k] is not None for k in WARNING_RULES}

    claims = []
    grokked = [s for s in per_seed if s["events"]["t_test95"] is not None
               and s["events"]["t_train99"] is not None]
    t95m, t95s = mean_se([s["events"]["t_test95"] for s in per_seed])
    t99m, t99s = mean_se([s["events"]["t_train99"] for s in per_seed])
    claims.append(claim_row(
        "grok-occurs", "grokking occurs (test ≥ 95 % long after train ≥ 99 %)",
        "sudden generalisation on (a+b) mod 113 with a 2-layer MLP; grokking epoch 2351",
        f"{len(grokked)}/{n} seeds grokked (p={params.p}, {params.op}, {params.model}); train 99 % at "
        f"{_fmt_lead(t99m, t99s)}, test 95 % at {_fmt_lead(t95m, t95s)} epochs",
        k_of_n(len(grokked), n, _need(n)), RULE_GROKS, value=t95m, uncertainty=t95s, figure=fo))

    seed_texts = {"seed_c_below_1": "C drops below ≈ 1, grokking follows shortly",
                  "seed_c_drop": "C(t) drops sharply ~200 epochs before grokking",
                  "c_below_2_decreasing": "C < 2 and still decreasing → grokking imminent",
                  "test_loss_onset": "baseline (not a seed claim)",
                  "weight_norm_drop": "baseline (not a seed claim)",
                  "memorisation": "baseline (not a seed claim): train accuracy alone"}
    # seeds in which each rule fires before grokking (lead > 0)
    fired_before = {k: sum(1 for s in per_seed if s["leads"][k] is not None and s["leads"][k] > 0)
                    for k in WARNING_RULES}
    for k in WARNING_RULES:
        leads = [s["leads"][k] for s in per_seed]
        before = fired_before[k]
        m, se = lead_stats[k]
        lo, hi = lead_boot[k]
        boot = f" (95 % bootstrap {lo:.0f} to {hi:.0f})" if np.isfinite(lo) else ""
        claims.append(claim_row(
            f"grok-warn-{k.replace('_', '-')}", f"early warning: {k}", seed_texts[k],
            f"lead {_fmt_lead(m, se)} epochs{boot}; fired before grokking in {before}/{n} seeds; "
            "control: " + ("not run" if ctrl_fired[k] is None else "fired" if ctrl_fired[k] else "did not fire"),
            warning_verdict(leads, ctrl_fired[k]), RULE_WARNING, value=m, uncertainty=se, figure=fl))

    k300 = sum(1 for s in per_seed if s["drop300"])
    claims.append(claim_row(
        "grok-c-drop-300", "C falls ≥ 50 % in the 300 epochs before grokking",
        "C(t) drops sharply ~200 epochs before grokking", f"{k300}/{n} seeds",
        k_of_n(k300, n, _need(n)) if n else NOT_TESTABLE.value, RULE_DROP300, value=k300 / max(n, 1),
        figure=fo))

    fractions = [s["leads"]["seed_c_drop"] / s["events"]["t_test95"]
                 if s["leads"]["seed_c_drop"] is not None and s["events"]["t_test95"] else None for s in per_seed]
    k_frac = sum(1 for f in fractions if f is not None and LEAD_FRACTION[0] <= f <= LEAD_FRACTION[1])
    fm, fs = mean_se(fractions)
    claims.append(claim_row(
        "grok-lead-fraction", "C drops 10–20 % of the training time before grokking",
        "C(t) drops sharply 10-20% of total training time before grokking",
        "lead / t_test95 of the C-drop rule: " + ", ".join("n/a" if f is None else f"{f:.2f}" for f in fractions)
        + f"; in [0.10, 0.20] in {k_frac}/{n} seeds", k_of_n(k_frac, n, _need(n)), RULE_LEAD_FRACTION,
        value=fm, uncertainty=fs, figure=fl))

    v, text = c_vs_baseline_verdict({k: [s["leads"][k] for s in per_seed] for k in C_RULES},
                                    {k: [s["leads"][k] for s in per_seed] for k in BASELINES})
    claims.append(claim_row("grok-c-vs-baselines", "C warns earlier than simple baselines",
                            "C(t) provides early warning of grokking", text, v, RULE_C_VS_BASELINE,
                            figure=fl))

    for key, label, seed_val, seed_text in (("C_pre", "pre-transition C", 8.7, "8.7 (predicted 8.2)"),
                                            ("C_post", "post-transition C", 0.85, "0.85 (predicted 0.9)")):
        vals = [s[key] for s in per_seed]
        m, se = mean_se(vals)
        regimes = ", ".join(str(regime_label(x)) if x is not None else "n/a" for x in vals)
        claims.append(claim_row(
            f"grok-{key.lower().replace('_', '-')}", label, seed_text,
            f"median smoothed C {_fmt_c(m, se)} (per seed: {regimes})",
            regime_verdict(vals, seed_val), RULE_REGIME, value=m, uncertainty=se, figure=fo))

    vals = [s["C_at_test50"] for s in per_seed]
    m, se = mean_se(vals)
    k1 = sum(1 for x in vals if x is not None and 0.5 <= x < 2.0)
    claims.append(claim_row("grok-near-c1", "grokking occurs near C ≈ 1", "C ≈ 1 at the transition",
                            f"C at test acc 50 %: {_fmt_c(m, se)}; critical regime in {k1}/{n} seeds",
                            k_of_n(k1, n, _need(n)), RULE_NEAR_C1, value=m, uncertainty=se, figure=fo))

    fires1 = [s["fires"]["seed_c_below_1"] for s in per_seed]
    t95s_list = [s["events"]["t_test95"] for s in per_seed]
    errs = loo_prediction_errors(fires1, t95s_list)
    if len(errs) < 2:
        k = sum(1 for f, t in zip(fires1, t95s_list) if f is not None and t is not None)
        v, me, mse = FAILS.value, None, None
        text = (f"leave-one-out needs ≥ 2 seeds where 'C < 1' fired and grokking happened; got {k}")
    else:
        me, mse = mean_se(errs)
        v = HOLDS.value if me <= 0.05 else PARTLY.value if me <= 0.20 else FAILS.value
        text = f"mean |relative error| {100 * me:.1f} % ± {100 * (mse if np.isfinite(mse) else 0):.1f} %"
    claims.append(claim_row("grok-predict-epoch", "grokking epoch predicted from C",
                            "predicted 2340 ± 50 vs observed 2351 (0.5 % error)", text, v, RULE_PREDICT,
                            value=me, uncertainty=mse, figure=fo))

    if ctrl is not None:
        warns = [k for k in C_RULES if fired_before[k] >= _need(n)]
        kc = sum(1 for k in warns if ctrl_fired[k])
        if not warns:
            v, judged = NOT_TESTABLE.value, (f"no C rule fires before grokking in {_need(n)}/{n} seeds, so "
                                             f"specificity is untested ({sum(1 for k in C_RULES if ctrl_fired[k])}"
                                             f"/{len(C_RULES)} C rules fired in the control)")
        else:
            v = HOLDS.value if kc == 0 else FAILS.value if kc == len(warns) else PARTLY.value
            judged = f"{kc}/{len(warns)} warning C rules ({', '.join(warns)}) fired in the control"
        claims.append(claim_row(
            "grok-control", "C warning is specific (random-label control)",
            "C drops because the memorising solution destabilises before generalising",
            f"control: {judged}; final test acc {ctrl['final_test_acc']:.3f}, "
            f"train acc {ctrl['final_train_acc']:.3f}; median C after arming "
            f"{_fmt_c(ctrl['C_median_after_arm'], None)}; judged over epochs 0–{ctrl['epochs_judged']:.0f} (the seeds' "
            f"median length {ctrl['seeds_median_epochs']:.0f})", v, RULE_CONTROL,
            value=ctrl["C_median_after_arm"], figure="control/figures/curves.png"))

    if not grokked:
        for row in claims:
            if row["id"] not in ("grok-occurs", "grok-control"):
                row["verdict"] = NOT_TESTABLE.value
                row["measured"] = "no seed grokked; " + row["measured"]
                row["rule"] = row["rule"] + " " + RULE_NO_GROK
    for row in claims:
        row["id"] = prefix + row["id"][len("grok"):]
    numbers = {"experiment": "grokking", "params": dataclasses.asdict(params), "per_seed": per_seed,
               "control": ctrl, "lead_fraction": fractions,
               "lead_times": {k: {"mean": m, "se": s, "bootstrap95": list(lead_boot[k])}
                              for k, (m, s) in lead_stats.items()},
               "figures": [fo, fl],
               "notes": [f"C in these rows is the monitor's C = 2B‖G‖²/tr Σ, i.e. D = D_seed (the seed's "
                         f"monitoring convention, without the learning rate); the seed's regime cuts 0.5, 1, 2 "
                         f"and 10 are applied to it. With the SDE's D_sde = η·D_seed every C would be 1/η = "
                         f"{1 / params.lr:.3g} times larger (docs/torch.md, 'D_sde versus the seed's D')."]}
    return claims, numbers


register(GrokkingStudy())


def _default(name: str, value):
    """Field ``name`` of :class:`GrokkingParams` with another default (same help and choices)."""
    return field(default=value, metadata=GrokkingParams.__dataclass_fields__[name].metadata)


@dataclass
class GrokkingTransformerParams(GrokkingParams):
    """Nanda et al. (2023)'s setting: (a + b) mod 113, 30 % of the pairs for training, a one-layer
    transformer (d_model 128, 4 heads, d_mlp 512; :class:`~shld.experiments.modular.OneLayerTransformer`),
    AdamW with weight decay 1 and β = (0.9, 0.98), full batch; the learning rate is 3× theirs
    (:data:`TRANSFORMER_LR`)."""
    p: int = _default("p", 113)
    train_fraction: float = _default("train_fraction", 0.3)
    model: str = _default("model", "transformer")
    width: int = _default("width", 128)
    lr: float = _default("lr", TRANSFORMER_LR)
    beta2: float = _default("beta2", 0.98)
    weight_decay: float = _default("weight_decay", 1.0)
    epochs: int = _default("epochs", TRANSFORMER_EPOCHS)
    post_epochs: int = _default("post_epochs", 100)
    n_seeds: int = _default("n_seeds", 5)
    control_epochs: int = _default("control_epochs", 2000)


class GrokkingTransformerStudy(GrokkingStudy):
    name = "grokking-transformer"
    help = ("Grokking in Nanda et al. (2023)'s setting (one-layer transformer, p = 113, 30 % training pairs, "
            "AdamW, weight decay 1): the same rules, baselines and matched control as `grokking`.")
    Params = GrokkingTransformerParams
    #: full audits only: an epoch costs about 0.4 s of one core here (the quick audit's MLP: about 10 ms)
    audit = {"full": {"n_seeds": 5, "control": True}}
    row_prefix = "grok-tf"


register(GrokkingTransformerStudy())

def _fmt_c(m, se):
    if m is None or not np.isfinite(m):
        return "n/a"
    return f"{m:.3g} ± {se:.2g}" if se is not None and np.isfinite(se) else f"{m:.3g}"


__all__ = ["GrokkingParams", "AUDIT", "train_member", "rule_fires", "events", "warning_verdict",
           "c_drop_within", "regime_verdict", "loo_prediction_errors", "c_vs_baseline_verdict", "GrokkingStudy",
           "GrokkingTransformerParams", "GrokkingTransformerStudy"]
