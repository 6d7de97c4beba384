# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SALAD in miniature: the analysis grid (paper Figures 1, 3, 4, 5; Tables 1, 2, 7)
#
# How do M, F and accuracy move with α, the data side and the training budget (Figures 4 and 5), how does the
# text–speech gap shrink with data (Figure 1), does misalignment M explain speech accuracy and forgetting F text accuracy (Figure 3, Table 1), do they still
# once α and the training budget are controlled for (Table 7), and how does M scale with training tokens
# (Table 2)? The statistics live in `salad.analysis.regressions` (on top of `salad.analysis.statistics`), which also documents what
# is fixed where the paper leaves a choice; this notebook only loads the grid, calls them, and tabulates and
# plots. Every table has the paper's published value beside ours (`paper_*` columns). As in the paper, Figure 3,
# Table 1 and Table 7 use the narrow side only (`speech`, standing for LibriHeavy + Emilia); accuracies are in
# percent, log is natural, and the paper's tokens are our training positions.

# %% tags=["parameters"]
params_path = "params.yaml"
reports = "reports"
root = "."

# %%
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from salad.analysis import figures
from salad.analysis import regressions as analysis
from salad.config import load_params
from salad.analysis.results import best_format_detail, grid_results, grid_teacher_accuracy
from salad.analysis.report import save_figure, save_metrics, save_table

root = Path(root)
params = load_params(params_path)
grid = grid_results(params, root / "metrics")
narrow = analysis.prepare(grid, analysis.NARROW)
print(f"{len(grid)} grid models; {len(narrow)} on the narrow side ({analysis.NARROW!r}) used for Fig 3, Tables 1 and 7")

# %% [markdown]
# ## The grid: M, F and accuracy over training positions, by α and data side (Figures 4 and 5)
#
# Every cell (data side × α) is one run whose smaller budgets branch their own learning-rate decays; each point
# is one model. `speech` is D_speech (books in several voices: the narrow natural side), `broad` is D_broad
# (D_web documents in the fixed voice: the broad synthetic side). Accuracy is the headline average: over the
# miniature family's tasks (the first `grid.family_items` items of each; the paper benchmarks, at chance here, are
# scored on `grid.eval_items` items per task and format, none by default) of the best prompt format's headline
# accuracy.

# %%
evaluate = json.loads((root / "metrics" / "evaluate.json").read_text())
save_table(grid, "grid", reports,
           caption=f"The analysis grid: {len(grid)} models ({len(params.grid.alphas)} α × {len(params.grid.data)} "
                   f"data sides × {len(params.grid.budgets) + 1} budgets); M ± standard error over "
                   f"{params.measure.layouts} span layouts; accuracies are {evaluate['headline']}.")
side_titles = {"speech": "D_speech (narrow, natural side)", "broad": "D_broad (broad, synthetic side)"}
colors = dict(zip(params.grid.alphas, plt.cm.viridis([i / max(1, len(params.grid.alphas) - 1)
                                                      for i in range(len(params.grid.alphas))])))


def grid_panels(rows):
    fig, axes = plt.subplots(len(rows), len(params.grid.data),
                             figsize=(5.2 * len(params.grid.data), 3.2 * len(rows)), sharex=True, sharey="row",
                             squeeze=False)
    shift = dict(zip(params.grid.alphas, figures.offsets(len(params.grid.alphas), log=True)))
    for col, data in enumerate(params.grid.data):
        for r, (key, label, log) in enumerate(rows):
            ax = axes[r][col]
            for marker, alpha in zip(figures.MARKERS, params.grid.alphas):
                cell = grid[(grid["data"] == data) & (grid["alpha"] == alpha)]
                x = cell["positions"] * shift[alpha]  # offsets keep coinciding α visible
                error = cell.get(f"{key}_se") if key != "F" else None
                ax.errorbar(x, cell[key], yerr=error, fmt=f"{marker}-", color=colors[alpha], markersize=5,
                            capsize=2, label=f"α = {alpha:g}")
            if key.endswith("accuracy"):
                figures.chance_line(ax, grid["chance"].mean())
            ax.set(xscale="log", yscale="log" if log else "linear", ylabel=label if col == 0 else None)
            ax.set_title(f"{label.split(' (')[0]}: {side_titles.get(data, data)}", fontsize=9)
            if r == len(rows) - 1:
                ax.set_xlabel("training positions")
    figures.legend_outside(fig, axes[-1][0])
    fig.tight_layout()
    return fig


save_figure(grid_panels([("M", "misalignment M (nats per token)", True), ("F", "forgetting F (nats per token)", True),
                         ("speech_accuracy", "speech accuracy (average)", False)]),
            "figure4_grid_M_F_speech", reports)
save_figure(grid_panels([("text_accuracy", "text accuracy (average)", False)]), "figure5_grid_text", reports)

# %% [markdown]
# ## Figure 1: the text–speech gap against training data, and per task
#
# Left: the gap (the teacher's text accuracy minus the student's speech accuracy, in points, on the grid's items)
# of every grid model against its training positions, and the main run's gap (on evaluate's items). The paper's
# left panel places SALAD beside other speech LLMs by training hours; those systems cannot run here, so ours shows
# the same quantity across our own budgets. Right: the teacher's text and the student's speech accuracy per task
# (main run, best format each).

# %%
teacher_grid = grid_teacher_accuracy(root / "data" / "eval" / "teacher.jsonl", root / "data" / "grid", params)
train = json.loads((root / "metrics" / "train.json").read_text())
fig, (ax_gap, ax_task) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
ax_gap.set_xscale("log")
for (data, alpha), cell in grid.groupby(["data", "alpha"]):
    ax_gap.plot(cell["positions"], 100 * (teacher_grid - cell["speech_accuracy"]), "o-" if data == "speech" else "s--",
                color=colors[alpha], label=f"{data}, α = {alpha:g}", markerfacecolor="none" if data != "speech" else None)
ax_gap.plot([train["positions"]], [100 * evaluate["gaps"]["speech"]["average"]], "*", color="C3", markersize=14,
            label=f"main run (α = {params.alpha:g})")
ax_gap.axhline(0, color="gray", lw=0.8)
ax_gap.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # the log axis' minor labels overlap
ax_gap.set(xlabel="training positions", ylabel="text − speech accuracy (points)",
           title="the text–speech gap against training data")
ax_gap.legend(fontsize=6.5, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
tasks = list(evaluate["best"]["teacher"]["text"]["tasks"])
x = range(len(tasks))
for offset, (model, mode, label, color) in zip((-0.2, 0.2), (("teacher", "text", "teacher, text", "C0"),
                                                             ("student", "speech", "student, speech", "C1"))):
    detail = best_format_detail(evaluate["results"][model], mode, evaluate["headline"])
    ax_task.bar([i + offset for i in x], [100 * detail[t]["accuracy"] for t in tasks], width=0.4,
                yerr=[100 * detail[t]["se"] for t in tasks], capsize=3, label=label, color=color)
for i, t in enumerate(tasks):  # each task's own chance level (2 or 4 choices)
    ax_task.hlines(100 * detail[t]["chance"], i - 0.45, i + 0.45, color="gray", linestyles=":",
                   label="chance" if i == 0 else None)
ax_task.set_xticks(list(x), tasks, rotation=20)
ax_task.set(ylabel=f"{evaluate['headline']} (%, ± binomial se)", title="per task (main run, best format)")
ax_task.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
fig.tight_layout()
save_figure(fig, "figure1_gap_vs_data", reports)

# %% [markdown]
# ## Table 1: univariate and partial R² (with Figure 3's fits)
#
# `R2` is in sample, `LOOCV_R2` leave-one-out; for the partial rows ("X given Y") they are the partial R²
# and the partial LOOCV R² = R²_cv(both) − R²_cv(Y). The paper's Table 1 cells (`paper_table1`) appear to be the
# cross-validated values (its univariate misalignment/speech and forgetting/text cells equal Figure 3's LOOCV R²).

# %%
t1 = analysis.or_reason(analysis.table1, grid)
save_table(t1, "table1", reports,
           caption=f"Table 1: OLS of average speech accuracy (%) and text accuracy (%) on ln M (misalignment) and F "
                   f"(forgetting), {len(narrow)} models of the narrow side; slope in percentage points per unit of "
                   f"the focal predictor. paper_table1: the paper's Table 1 cell; paper_LOOCV_R2: Figure 3's "
                   f"LOOCV R².")

# %% [markdown]
# ## Figure 3: speech accuracy against log M, text accuracy against F
#
# OLS line and 95% confidence band of the mean prediction, fitted on the narrow side (filled markers). Broad-side
# models (hollow markers) are drawn for context and are not in the fit.

# %%
fits = analysis.figure3_fits(grid)
everything = analysis.prepare(grid, data=None)
alphas = sorted(everything["alpha"].unique())
colors = dict(zip(alphas, plt.cm.viridis([i / max(1, len(alphas) - 1) for i in range(len(alphas))])))
markers = {"speech": "o", "broad": "s"}
panels = [("speech", "ln M (misalignment, nats per token)", "average speech accuracy (%)"),
          ("text", "F (forgetting, nats per token)", "average text accuracy (%)")]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, (side, xlabel, ylabel) in zip(axes, panels):
    fit = fits[side]
    if "band" in fit:  # absent when the fit is not estimable (fit["status"] says why)
        band = fit["band"]
        ax.fill_between(band["x"], band["lower"], band["upper"], color="C3", alpha=0.2, label="95% CI of the mean")
        ax.plot(band["x"], band["mean"], "-", color="C3", label="OLS fit (narrow side)")
    for (data, alpha), cell in everything.groupby(["data", "alpha"]):
        in_fit = data == analysis.NARROW
        ax.errorbar(cell[fit["x"]], cell[fit["y"]], yerr=100 * cell[f"{side}_accuracy_se"], fmt="none",
                    ecolor=colors[alpha], alpha=0.5, capsize=0)
        ax.scatter(cell[fit["x"]], cell[fit["y"]], marker=markers.get(data, "^"), s=36,
                   facecolors=colors[alpha] if in_fit else "none", edgecolors=colors[alpha],
                   label=f"{data}, α = {alpha:g}")
    figures.chance_line(ax, 100 * everything["chance"].mean())
    ax.set(xlabel=xlabel, ylabel=ylabel.replace("(%)", "(%, ± binomial se)"),
           title=f"{side} accuracy: LOOCV R² = {fit['loocv_r2']:.2f} (R² = {fit['r2']:.2f}, n = {fit['n']})")
figures.legend_outside(fig, axes[0])
fig.tight_layout()
save_figure(fig, "figure3_accuracy_vs_M_F", reports)

# %% [markdown]
# ## Table 7: type-II ANCOVA controlling for α (fixed effects) and log(tokens); Appendix A.6's partial LOOCV R²
#
# Speech accuracy on ln M, text accuracy on F, each with α as a categorical fixed effect and ln(positions) as a
# covariate, no interactions. partial_R2 = SS/(SS + SS_resid); partial_LOOCV_R2 = R²_cv(full) − R²_cv(full
# without the term) (the paper quotes it for the focal term only).

# %%
t7 = analysis.or_reason(analysis.table7, grid)
save_table(t7, "table7", reports,
           caption=f"Table 7: type-II ANCOVA on the narrow side ({len(narrow)} models); SS in squared percentage "
                   f"points. The paper's residual df is 23 (30 models); the miniature grid has "
                   f"{len(params.grid.alphas)} α × {len(params.grid.budgets) + 1} budgets.")

# %% [markdown]
# ## Table 2: scaling laws of misalignment, M = E + B·D^(−β), for runs with α > 0
#
# D is training positions; Tokens@5%E solves B·D^(−β) = 0.05·E. A fit the data cannot support is a row of NaN
# with the reason in `status`. With len(grid.budgets) + 1 models per cell the law has barely more points than
# parameters, and each leave-one-out refit interpolates the remaining points: read LOOCV R² with that in mind.
# The paper's B and Tokens@5%E are in its tokens (billions for the latter) and not comparable in magnitude.

# %%
t2 = analysis.or_reason(analysis.table2, grid)
save_table(t2, "table2", reports,
           caption=f"Table 2: M = E + B·D^(−β) per data side and α > 0 over {len(params.grid.budgets) + 1} models "
                   f"each (D = training positions); tokens_at_5pct_E in positions, tokens_beyond_data when it "
                   f"exceeds the largest D fitted.")

# %%
save_metrics({"narrow_models": len(narrow),
              "speech_vs_logM_loocv_r2": fits["speech"]["loocv_r2"], "speech_vs_logM_slope": fits["speech"]["slope"],
              "text_vs_F_loocv_r2": fits["text"]["loocv_r2"], "text_vs_F_slope": fits["text"]["slope"],
              "teacher_accuracy_on_grid_items": teacher_grid}, reports)
