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
# # SALAD in miniature: the analysis of the grid (paper Section 3.5, Appendix A.6)
#
# Does misalignment M explain speech accuracy and forgetting F text accuracy (Figure 3, Table 1), do they still
# once α and the training budget are controlled for (Table 7), and how does M scale with training tokens
# (Table 2)? The statistics live in `salad.analysis` (on top of `salad.statistics`), which also documents what
# is fixed where the paper leaves a choice; this notebook only loads the grid, calls them, and tabulates and
# plots. Every table has the paper's published value beside ours (`paper_*` columns). As in the paper, Figure 3,
# Table 1 and Table 7 use the narrow side only (`speech`, standing for LibriHeavy + Emilia); accuracies are in
# percent, log is natural, and the paper's tokens are our training positions.

# %% tags=["parameters"]
params_path = "params.yaml"
reports = "reports"
root = "."

# %%
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from salad import analysis
from salad.config import load_params
from salad.grid import grid_results
from salad.report import save_figure, save_table

root = Path(root)
params = load_params(params_path)
grid = grid_results(params, root / "metrics")
narrow = analysis.prepare(grid, analysis.NARROW)
print(f"{len(grid)} grid models; {len(narrow)} on the narrow side ({analysis.NARROW!r}) used for Fig 3, Tables 1 and 7")

# %% [markdown]
# ## Table 1: univariate and partial R² (with Figure 3's fits)
#
# `R2` is in sample, `LOOCV_R2` leave-one-out; for the partial rows ("X given Y") they are the partial R²
# and the partial LOOCV R² = R²_cv(both) − R²_cv(Y). The paper's Table 1 cells (`paper_table1`) appear to be the
# cross-validated values (its univariate misalignment/speech and forgetting/text cells equal Figure 3's LOOCV R²).

# %%
t1 = analysis.table1(grid)
save_table(t1, "table1", reports,
           caption=f"Table 1: OLS of average speech accuracy (%) and text accuracy (%) on ln M (misalignment) and F "
                   f"(forgetting), {len(narrow)} models of the narrow side; slope in percentage points per unit of "
                   f"the focal predictor. paper_table1: the paper's Table 1 cell; paper_LOOCV_R2: Figure 3's "
                   f"LOOCV R².")
t1

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
    band = fit["band"]
    ax.fill_between(band["x"], band["lower"], band["upper"], color="C3", alpha=0.2, label="95% CI of the mean")
    ax.plot(band["x"], band["mean"], "-", color="C3", label="OLS fit (narrow side)")
    for (data, alpha), cell in everything.groupby(["data", "alpha"]):
        in_fit = data == analysis.NARROW
        ax.scatter(cell[fit["x"]], cell[fit["y"]], marker=markers.get(data, "^"), s=36,
                   facecolors=colors[alpha] if in_fit else "none", edgecolors=colors[alpha],
                   label=f"{data}, α = {alpha:g}")
    ax.set(xlabel=xlabel, ylabel=ylabel,
           title=f"{side} accuracy: LOOCV R² = {fit['loocv_r2']:.2f} (R² = {fit['r2']:.2f}, n = {fit['n']})")
axes[1].legend(fontsize=7, ncol=2, loc="best")
fig.tight_layout()
save_figure(fig, "figure3_accuracy_vs_M_F", reports)

# %% [markdown]
# ## Table 7: type-II ANCOVA controlling for α (fixed effects) and log(tokens); Appendix A.6's partial LOOCV R²
#
# Speech accuracy on ln M, text accuracy on F, each with α as a categorical fixed effect and ln(positions) as a
# covariate, no interactions. partial_R2 = SS/(SS + SS_resid); partial_LOOCV_R2 = R²_cv(full) − R²_cv(full
# without the term) (the paper quotes it for the focal term only).

# %%
t7 = analysis.table7(grid)
save_table(t7, "table7", reports,
           caption=f"Table 7: type-II ANCOVA on the narrow side ({len(narrow)} models); SS in squared percentage "
                   f"points. The paper's residual df is 23 (30 models); the miniature grid has "
                   f"{len(params.grid.alphas)} α × {len(params.grid.budgets) + 1} budgets.")
t7

# %% [markdown]
# ## Table 2: scaling laws of misalignment, M = E + B·D^(−β), for runs with α > 0
#
# D is training positions; Tokens@5%E solves B·D^(−β) = 0.05·E. A fit the data cannot support is a row of NaN
# with the reason in `status`. With len(grid.budgets) + 1 models per cell the law has barely more points than
# parameters, and each leave-one-out refit interpolates the remaining points: read LOOCV R² with that in mind.
# The paper's B and Tokens@5%E are in its tokens (billions for the latter) and not comparable in magnitude.

# %%
t2 = analysis.table2(grid)
save_table(t2, "table2", reports,
           caption=f"Table 2: M = E + B·D^(−β) per data side and α > 0 over {len(params.grid.budgets) + 1} models "
                   f"each (D = training positions); tokens_at_5pct_E in positions, tokens_beyond_data when it "
                   f"exceeds the largest D fitted.")
t2
