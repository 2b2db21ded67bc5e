"""Seeded statistics of the ablation study and ``cfnet ablate report`` (Markdown).

    cfnet ablate report [--results results/ablations] [--out docs/ablations.md]

Reads only the cached result JSONs (:mod:`cfnet.ablation`), never trains. For every table:

* each row's mean ± sample standard deviation over the seeds it has;
* each row's **paired difference** to the table's reference row: the difference on the same seed,
  then its mean and a 95 % Student-t interval over the seeds both rows have
  (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n); a difference is *resolved* when the interval excludes 0;
* the paper's numbers and the paper's differences beside ours.

The output is deterministic (stable ordering, fixed number formats, no time stamps), so
``docs/ablations.md`` is exactly ``cfnet ablate report`` on the committed results.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnet import ablation
from cfnet.ablation_study import STUDY, plan

__all__ = [
    "t_quantile_975",
    "Summary",
    "Difference",
    "RowStatistics",
    "summarize",
    "paired_difference",
    "table_statistics",
    "resolution_lines",
    "render_table",
    "load_results",
    "collect",
    "render_report",
    "diverged_runs",
    "fit_losses",
    "DIVERGED_FACTOR",
]

# Two-sided 95 % quantiles t_{0.975, df} of Student's t (df = 1..30); beyond, the normal 1.96 is
# within 0.05 of the true value and the intervals are already narrow.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: the multiplier of a two-sided 95 % interval with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (None for one value) and count of a list of numbers."""

    mean: float
    std: float | None
    n: int


def summarize(values: Sequence[float]) -> Summary | None:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return Summary(mean, None, 1)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return Summary(mean, math.sqrt(var), len(vals))


@dataclass(frozen=True)
class Difference:
    """Paired difference row − reference over common seeds: mean, 95 % t-interval (n ≥ 2)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def resolved(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def paired_difference(row: dict[int, float], reference: dict[int, float]) -> Difference | None:
    """Paired difference of two ``{seed: value}`` maps over the seeds both have."""
    seeds = sorted(s for s in row if s in reference and row[s] is not None and reference[s] is not None)
    if not seeds:
        return None
    diffs = [row[s] - reference[s] for s in seeds]
    summary = summarize(diffs)
    if summary.n < 2:
        return Difference(summary.mean, None, None, 1)
    half = t_quantile_975(summary.n - 1) * summary.std / math.sqrt(summary.n)
    return Difference(summary.mean, summary.mean - half, summary.mean + half, summary.n)


# ----------------------------------------------------------------------------------------------
# reading results


def load_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every cached result in ``results_dir`` (sorted by file name); foreign files are an error."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"--results {results_dir}: no such folder")
    out = []
    for path in sorted(results_dir.glob("*.json")):
        record = ablation.load_result(path)
        out.append(dict(record, path=str(path)))
    return out


def collect(
    records: Iterable[dict[str, Any]], *, preset: str, iters: int
) -> dict[str, dict[int, dict[str, Any]]]:
    """``{run: {seed: record}}`` for the records of one protocol (preset and iterations).

    A run's record must have exactly the run's overrides (:data:`cfnet.ablation.RUNS`), so a
    result of an older definition of a run is never mixed in. Two records of the same run and seed
    (e.g. on different data) are an error: the report would have to pick one silently.
    """
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in records:
        s = rec["settings"]
        name = rec.get("name")
        if s.get("preset") != preset or s.get("iters") != iters or name not in ablation.RUNS:
            continue
        if list(s.get("overrides", [])) != list(ablation.RUNS[name]):
            continue
        seed = int(s["seed"])
        if seed in out.setdefault(name, {}):
            raise ValueError(
                f"two results for run {name!r} seed {seed}: {out[name][seed]['path']} and {rec['path']}; "
                "keep one"
            )
        out[name][seed] = rec
    return out


DIVERGED_FACTOR = 3.0
"""A run *diverged* when its fit loss is above this many times the median fit loss of the study."""


def fit_losses(data: dict[str, dict[int, dict[str, Any]]]) -> dict[tuple[str, int], float]:
    """``{(run, seed): fit loss}`` for the records that have one (:func:`cfnet.diagnostics.fit_loss`)."""
    out = {}
    for run, runs in data.items():
        for seed, rec in runs.items():
            value = (rec.get("training") or {}).get("fit_loss")
            if value is not None:
                out[(run, seed)] = float(value)
    return out


def fpn_scales(data: dict[str, dict[int, dict[str, Any]]]) -> dict[tuple[str, int], float]:
    """``{(run, seed): mean |P_l| over the FPN levels}`` for the records that have a feature scale.

    From ``training.feature_scale`` (:func:`cfnet.diagnostics.feature_scale`): the mean over its
    FPN keys (``p2`` …), leaving out the ResNet stages (``body.*``).
    """
    out = {}
    for run, runs in data.items():
        for seed, rec in runs.items():
            scale = (rec.get("training") or {}).get("feature_scale")
            levels = [float(v) for k, v in (scale or {}).items() if not k.startswith("body.")]
            if levels:
                out[(run, seed)] = statistics.fmean(levels)
    return out


def diverged_runs(data: dict[str, dict[int, dict[str, Any]]]) -> set[tuple[str, int]]:
    """The (run, seed) pairs whose final weights no longer fit their training data.

    A loss spike that the network never recovers from ends in weights whose training loss is many
    times that of every converged run (no NaN, so the trainer does not stop). Judged on the
    weights, not on the evaluation: a run is flagged when its fit loss exceeds
    :data:`DIVERGED_FACTOR` × the median fit loss of all runs. Its numbers stay in every table,
    as measured, and are marked.
    """
    losses = fit_losses(data)
    if not losses:
        return set()
    median = statistics.median(losses.values())
    return {key for key, value in losses.items() if value > DIVERGED_FACTOR * median}


# ----------------------------------------------------------------------------------------------
# formatting

_PERCENT_METRICS = {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU", "mask_AP", "PQ_touch"}


def _fmt(value: float | None) -> str:
    # One decimal for every metric, percent and milliseconds alike.
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.1f}"


def _fmt_signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}"


def _summary_cell(summary: Summary | None) -> str:
    if summary is None:
        return "—"
    if summary.std is None:
        return f"{_fmt(summary.mean)}"
    return f"{_fmt(summary.mean)} ± {_fmt(summary.std)}"


def _difference_cell(diff: Difference | None) -> str:
    if diff is None:
        return "—"
    if diff.low is None:
        return f"{_fmt_signed(diff.mean)} (1 seed)"
    mark = " ✓" if diff.resolved else ""
    return f"{_fmt_signed(diff.mean)} [{_fmt_signed(diff.low)}, {_fmt_signed(diff.high)}]{mark}"


def _seeds_cell(run: str, seeds: Sequence[int], diverged: set[tuple[str, int]]) -> str:
    return ",".join(f"{s}‡" if (run, s) in diverged else str(s) for s in seeds) or "pending"


def _metric_by_seed(runs: dict[int, dict[str, Any]], metric: str) -> dict[int, float]:
    return {
        seed: rec["metrics"].get(metric)
        for seed, rec in runs.items()
        if rec["metrics"].get(metric) is not None
    }


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None
) -> list[str]:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


@dataclass(frozen=True)
class RowStatistics:
    """One table row on the committed results: per-metric summaries, paired differences to the
    table's reference row (None on the reference itself), and the paper's numbers and differences."""

    label: str
    run: str
    seeds: tuple[int, ...]
    summaries: dict[str, Summary | None]
    differences: dict[str, Difference | None]
    paper: dict[str, float]
    paper_differences: dict[str, float | None]
    is_reference: bool


def table_statistics(name: str, data: dict[str, dict[int, dict[str, Any]]]) -> list[RowStatistics]:
    """The statistics of table ``name`` (:data:`cfnet.ablation.TABLES`) on ``collect``'s output."""
    table = ablation.TABLES[name]
    ref_row = next(r for r in table.rows if r.label == table.reference)
    ref_runs = data.get(ref_row.run, {})
    out = []
    for row in table.rows:
        runs = data.get(row.run, {})
        # A row that is the reference's run (Table 7's S=16 is N=5's run) has no difference to it.
        is_ref = row.run == ref_row.run
        diffs = {
            m: None if is_ref else paired_difference(_metric_by_seed(runs, m), _metric_by_seed(ref_runs, m))
            for m in table.metrics
        }
        paper_diffs = {
            m: row.paper[m] - ref_row.paper[m] if m in row.paper and m in ref_row.paper else None
            for m in table.metrics
        }
        out.append(
            RowStatistics(
                label=row.label,
                run=row.run,
                seeds=tuple(sorted(runs)),
                summaries={m: summarize(list(_metric_by_seed(runs, m).values())) for m in table.metrics},
                differences=diffs,
                paper=dict(row.paper),
                paper_differences=paper_diffs,
                is_reference=is_ref,
            )
        )
    return out


def resolution_lines(name: str, data: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Which paired differences of table ``name`` are resolved (95 % interval excludes 0), in words."""
    resolved, unresolved = [], []
    diverged = diverged_runs(data)
    ref_run = next(r.run for r in ablation.TABLES[name].rows if r.label == ablation.TABLES[name].reference)
    for row in table_statistics(name, data):
        bad = any((run, s) in diverged for run in (row.run, ref_run) for s in row.seeds)
        for m, diff in row.differences.items():
            if m == "latency_ms" or diff is None or diff.n < 2:
                continue
            text = f"{row.label} {m} {_fmt_signed(diff.mean)}"
            text += " (a diverged seed included)" if bad else ""
            (resolved if diff.resolved else unresolved).append(text)
    lines = []
    if resolved:
        lines.append("Resolved (interval excludes 0): " + "; ".join(resolved) + ".")
    if unresolved:
        lines.append("Not resolved (interval includes 0): " + "; ".join(unresolved) + ".")
    if not lines:
        lines.append("No difference has two or more seeds yet: nothing is resolved.")
    converged = _converged_only_differences(name, data, diverged)
    if converged:
        lines.append(
            "Converged seeds only (the diverged seeds left out of both sides of each pair; a "
            "reading beside the as-measured numbers above, not instead of them): "
            + "; ".join(converged) + "."
        )
    return lines


def _converged_only_differences(
    name: str, data: dict[str, dict[int, dict[str, Any]]], diverged: set[tuple[str, int]]
) -> list[str]:
    """The paired differences of the rows that include a diverged seed, recomputed without it."""
    if not diverged:
        return []
    table = ablation.TABLES[name]
    ref_run = next(r.run for r in table.rows if r.label == table.reference)
    affected = {
        r.run
        for r in table.rows
        if r.run != ref_run
        and any((run, s) in diverged for run in (r.run, ref_run) for s in data.get(r.run, {}))
    }
    if not affected:
        return []
    clean = {
        run: {s: rec for s, rec in runs.items() if (run, s) not in diverged} for run, runs in data.items()
    }
    out = []
    for row in table_statistics(name, clean):
        if row.run not in affected:
            continue
        for m, diff in row.differences.items():
            if m != "latency_ms":
                out.append(f"{row.label} {m} {_difference_cell(diff) if diff else '— (no converged pair)'}")
    return out


def render_table(name: str, data: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Markdown lines of one table: summaries, paired differences, the paper's numbers, resolution."""
    table = ablation.TABLES[name]
    stats = table_statistics(name, data)
    has_paper = any(row.paper for row in table.rows)
    lines = [f"### {table.title}", "", table.note, ""]
    lines += [
        "Mean ± sample std over seeds (a single number: one seed). A seed marked ‡ diverged in "
        "training (see *Training health*); its numbers are included as measured.",
        "",
    ]
    diverged = diverged_runs(data)
    rows = [
        [r.label, f"`{r.run}`", _seeds_cell(r.run, r.seeds, diverged)]
        + [_summary_cell(r.summaries[m]) for m in table.metrics]
        for r in stats
    ]
    lines += _table(
        ["row", "run", "seeds", *table.metrics], rows, ["---"] * 3 + ["---:"] * len(table.metrics)
    )
    diff_metrics = [m for m in table.metrics if m != "latency_ms"]
    paper_metrics = [m for m in diff_metrics if any(m in r.paper for r in table.rows)]
    lines += [
        "",
        f"Paired differences to **{table.reference}** (same seed; mean [95 % t-interval]; "
        "✓: the interval excludes 0)" + (", beside the paper's differences" if has_paper else "") + ":",
        "",
    ]
    rows = [
        [r.label]
        + [_difference_cell(r.differences[m]) for m in diff_metrics]
        + [_fmt_signed(r.paper_differences[m]) for m in paper_metrics]
        for r in stats
        if not r.is_reference
    ]
    header = ["row"] + [f"Δ{m}" for m in diff_metrics] + [f"paper Δ{m}" for m in paper_metrics]
    lines += _table(header, rows)
    if has_paper:
        lines += ["", "The paper's numbers (COCO val / ADE20k, R50-FPN):", ""]
        all_paper = [m for m in table.metrics if any(m in r.paper for r in table.rows)]
        lines += _table(
            ["row", *all_paper],
            [[r.label] + [_fmt(r.paper.get(m)) for m in all_paper] for r in table.rows],
        )
    return lines + [""] + resolution_lines(name, data) + [""]


def _render_confusion(
    data: dict[str, dict[int, dict[str, Any]]], runs: Sequence[tuple[str, str]]
) -> list[str]:
    """Mean stuff confusion (percent of each ground-truth stuff class's pixels) per run."""
    lines = []
    for label, run in runs:
        recs = [rec for _, rec in sorted(data.get(run, {}).items()) if rec["metrics"].get("stuff_confusion")]
        if not recs:
            continue
        gts = list(recs[0]["metrics"]["stuff_confusion"])
        preds = list(recs[0]["metrics"]["stuff_confusion"][gts[0]])
        rows = []
        for g in gts:
            vals = [summarize([r["metrics"]["stuff_confusion"][g][p] for r in recs]).mean for p in preds]
            rows.append([g] + [f"{v:.1f}" for v in vals])
        lines += [
            f"**{label}** (`{run}`, {len(recs)} seed{'s' if len(recs) > 1 else ''}): rows are the "
            "ground truth, columns the semantic branch's prediction, percent of the row's pixels.",
            "",
        ]
        lines += _table(["ground truth \\ predicted"] + preds, rows)
        lines.append("")
    return lines


_DIAG_KEYS = (
    ("scm_same_class_mass", "SCM same-class mass"),
    ("scm_uniform_mass", "uniform (chance)"),
    ("scm_entropy", "SCM entropy (nats)"),
    ("icm_separability", "ICM c_u sep."),
    ("icm_output_separability", "ICM f^I sep."),
    ("input_separability", "input sep."),
    ("coords_separability", "CoordConv sep."),
    ("sine_separability", "sine sep."),
    ("icm_term_ratio", "ICM term ratio"),
)


def _render_diagnostics(data: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """One row per run, means over its converged seeds; each diverged seed on a row of its own.

    What a diverged network "learned" says nothing about its module (its FPN outputs are tens of
    times larger, so ratios like the ICM term explode), so it is kept out of the run's means and
    shown apart, as measured.
    """
    diverged = diverged_runs(data)

    def row(label: str, seeds: str, recs: list[dict[str, Any]]) -> list[str]:
        cells = [label, seeds]
        for key, _ in _DIAG_KEYS:
            s = summarize([r["diagnostics"].get(key) for r in recs])
            cells.append("—" if s is None else f"{s.mean:.3f}")
        fit = summarize([(r.get("training") or {}).get("fit_loss") for r in recs])
        return cells + ["—" if fit is None else f"{fit.mean:.3f}"]

    rows = []
    for run in ablation.RUNS:
        with_diag = [(seed, rec) for seed, rec in sorted(data.get(run, {}).items()) if rec.get("diagnostics")]
        converged = [rec for seed, rec in with_diag if (run, seed) not in diverged]
        if converged:
            rows.append(row(f"`{run}`", str(len(converged)), converged))
        rows += [
            row(f"`{run}` seed {seed} ‡", "1", [rec]) for seed, rec in with_diag if (run, seed) in diverged
        ]
    if not rows:
        return ["No result has diagnostics yet.", ""]
    return _table(["run", "seeds"] + [label for _, label in _DIAG_KEYS] + ["fit loss"], rows) + [""]


def _render_training_health(data: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    losses = fit_losses(data)
    if not losses:
        return ["No result has a fit loss yet.", ""]
    diverged = diverged_runs(data)
    ok = sorted(v for k, v in losses.items() if k not in diverged)
    scales = fpn_scales(data)
    ok_scales = sorted(v for k, v in scales.items() if k not in diverged)
    lines = [
        "The *fit loss* of a run is the training loss (Eq. 1) of its final weights on the first "
        "64 training images, without augmentation and with batch-norm's running statistics "
        "(`cfnet.diagnostics.fit_loss`). A run whose loss spiked and never recovered ends with "
        "weights that no longer fit its own training data; it is marked *diverged* when its fit loss "
        f"is above {DIVERGED_FACTOR:g}× the median of all runs. "
        + (
            f"The converged runs lie between {ok[0]:.3f} and {ok[-1]:.3f}."
            if ok
            else "No run converged."
        ),
        "",
    ]
    if scales:
        lines += [
            "The *FPN scale* is the mean |activation| of the FPN's outputs P2…P6 on the first 8 "
            "training images (`training.feature_scale`, `cfnet.diagnostics.feature_scale`; the ResNet "
            "stages end in batch-norm, the FPN has no normalisation). "
            + (
                f"In the converged runs that have it, it lies between {ok_scales[0]:.2f} and "
                f"{ok_scales[-1]:.2f}."
                if ok_scales
                else ""
            ),
            "",
        ]
    if not diverged:
        return lines + [f"None of the {len(losses)} runs diverged.", ""]
    rows = [
        [f"`{run}`", str(seed), f"{losses[(run, seed)]:.3f}",
         f"{scales[(run, seed)]:.1f}" if (run, seed) in scales else "—",
         _fmt(data[run][seed]["metrics"].get("PQ")), _fmt(data[run][seed]["metrics"].get("mIoU"))]
        for run, seed in sorted(diverged)
    ]
    lines += [
        f"{len(diverged)} of {len(losses)} runs diverged (no NaN: the trainer's guard does not stop "
        "them). Their numbers measure the schedule's instability, not the module they ablate; they "
        "stay in the tables, marked ‡.",
        "",
    ]
    return lines + _table(["run", "seed", "fit loss", "FPN scale", "PQ", "mIoU"], rows) + [""]


_WHY_PROTOCOL = (
    "Why this protocol. On the standard `shapes` set every configuration ties: a calibration with "
    "1000 train / 300 val images and 800 iterations (one seed) gave PQ 69.1 for the baseline, 69.2 "
    "with SCM, 68.9 with SCM + ICM, 68.8 without any position module and 68.8 with the mask branch's "
    "CoordConv zeroed as well. At 128 px that set needs neither mechanism (P5 sees the whole image; "
    "zero padding tells the network where it is). The study therefore runs on the `hard` variant, "
    "built so that each mechanism is needed (docs/shapes.md): a column's class is written only at "
    "its top end, and lattice crowds of identical touching things sit in the middle of the image. "
    "The headroom controls below check that it is. The schedule is the `shapes-tiny` preset's own "
    "(2000 iterations at batch 8, AdamW, steps at 80 % and 92.5 %), not tuned for any row; 500 val "
    "images keep the evaluation noise small against the seed noise. Whether the full model reaches "
    "PQ 75 on this set is reported, not tuned for. Latencies (`latency_ms`) were measured while other "
    "jobs shared the 2 cores: compare them only within a run of `cfnet bench model`, not here."
)


def render_report(records: Sequence[dict[str, Any]], protocol: Any) -> str:
    """The Markdown report of one protocol's results (see the module docstring)."""
    data = collect(records, preset=protocol.preset, iters=protocol.iters)
    planned = plan(list(ablation.TABLES), list(protocol.seeds))
    done = [(r, s) for r, s in planned if s in data.get(r, {})]
    pending = [(r, s) for r, s in planned if s not in data.get(r, {})]
    envs = sorted(
        {
            f"{rec['environment'].get('device', '?')} / {rec['environment'].get('processor', '?')} / "
            f"torch {rec['environment'].get('torch', '?')}"
            for runs in data.values()
            for rec in runs.values()
        }
    )
    data_desc = sorted(
        {
            json.dumps(rec["settings"]["data"], sort_keys=True)
            for runs in data.values()
            for rec in runs.values()
        }
    )
    lines = [
        "# The ablation study, measured",
        "",
        "Generated by `cfnet ablate report` from the result files in `results/ablations/`; do not "
        "edit by hand (`cfnet ablate run` adds results, this command rewrites the page).",
        "",
        "## Protocol",
        "",
        f"- Data: `cfnet data shapes --variant {protocol.variant} --num-train {protocol.num_train} "
        f"--num-val {protocol.num_val} --size {protocol.size} --seed {protocol.data_seed}` "
        "(docs/shapes.md), the same for every run.",
        f"- Model and schedule: preset `{protocol.preset}`, {protocol.iters} iterations at its batch size, "
        "nothing tuned per configuration; a run is the preset plus the overrides in `cfnet.ablation.RUNS`.",
        f"- Seeds {', '.join(map(str, protocol.seeds))} (initialisation and data order). Tables 4 and 6 "
        "run every seed, the other tables the first.",
        "- Results: "
        + f"{len(done)} of {len(planned)} planned runs. "
        + ("Pending: " + ", ".join(f"`{r}`/s{s}" for r, s in pending) + "." if pending else "None pending."),
        "- Environments: " + ("; ".join(envs) if envs else "—") + ".",
    ]
    if len(data_desc) > 1:
        lines.append("- **Warning**: the results come from more than one data set description.")
    lines += ["", _WHY_PROTOCOL, "", "## Training health", ""]
    lines += _render_training_health(data)
    lines += ["## Headroom controls", ""]
    lines += render_table("controls", data)
    lines += ["#### Stuff confusion", ""]
    lines += _render_confusion(
        data,
        [("SCM + CoordConv", "scm"), ("no semantic module", "baseline"), ("non-local attention", "att-icm")],
    )
    lines += render_table("position", data)
    lines += ["## The paper's tables", ""]
    for name in ("table4", "table5", "table6", "table7", "fn"):
        lines += render_table(name, data)
    lines += [
        "## Correlation diagnostics",
        "",
        "Means over the converged seeds that have them; a diverged seed (‡, see *Training health*) "
        "has a row of its own, since its numbers describe a broken network, not its module "
        "(`cfnet analyze` defines each number; separabilities are leave-one-out nearest-centroid "
        "accuracies on touching same-class pairs, chance 0.5).",
        "",
    ]
    lines += _render_diagnostics(data)
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------
# CLI: cfnet ablate report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results/ablations", help="result JSON folder")
    parser.add_argument("--out", default="docs/ablations.md", help="Markdown file to write ('-' for stdout)")


def main(args: argparse.Namespace) -> int:
    try:
        text = render_report(load_results(args.results), STUDY)
    except (ValueError, FileNotFoundError) as e:
        print(f"cfnet ablate report: {e}", file=sys.stderr)
        return 2
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as e:
        print(f"cfnet ablate report: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
