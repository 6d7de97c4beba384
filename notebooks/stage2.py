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
# # SALAD in miniature: Stage II and active selection (paper Section 4: Figures 2, 6, 7, 8, 9; Table 4)
#
# Where the corpora fall among the selection pool's clusters and where the Stage I model is misaligned (Figures
# 2 and 9), what Stage II gains with uniform and active selection (Table 4, Figure 6), per MMSU category (Figure 7)
# and per task over training (Figure 8). This notebook only loads, calls `salad`, tabulates and plots.

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

from salad.analysis import paper_tables
from salad.config import load_params, stage2_cell_name
from salad.analysis.report import save_figure, save_metrics, save_table
from salad.analysis.category_gains import category_gains, item_categories
from salad.analysis import figures
from salad.analysis.results import (best_format_detail, binomial_se, checkpoint_positions, stage2_per_task,
                                    stage2_results)
from salad.evaluation.benchmarks import category_tasks, headline_tasks, summarize
from salad.storage.atomic import read_jsonl

root = Path(root)
params = load_params(params_path)
evaluate = json.loads((root / "metrics" / "evaluate.json").read_text())
stage1_records = root / "data" / "eval" / "student.jsonl"
uniform = stage2_cell_name(0.0, params.active.budget)
active = stage2_cell_name(params.active.gamma, params.active.budget)

# %% [markdown]
# ## Active selection: where the corpora fall, where the model is misaligned, what Stage II drew (paper Figures 2 and 9)
#
# D_web's selection pool is clustered (balanced k-means on sentence embeddings); each cluster is labelled by its
# most distinctive terms (class-based TF-IDF). D_speech's texts are assigned to the nearest centroid. M(c) is the
# Stage I model's L_DIST on the cluster's probe documents; D_active is drawn in proportion to P_web(c)·M(c)^γ.

# %%
from salad.analysis.results import cluster_table

clusters = cluster_table(params, root / "metrics").sort_values("M", ascending=False, ignore_index=True)
save_table(clusters, "active_clusters", reports,
           caption=f"{params.active.clusters} clusters of {params.active.pool_docs or 'all'} D_web documents "
                   f"({params.active.embedder}); shares of each corpus per cluster; M(c) ± se over "
                   f"{params.measure.layouts} layouts of {params.active.probes_per_cluster} probes per cluster; "
                   f"D_active at budget {params.active.budget:g} of D_speech.")
share_cols = [c for c in clusters.columns if c.endswith("_share") or c.startswith("active_share")]
fig, (ax_share, ax_m) = plt.subplots(1, 2, figsize=(13, 0.32 * len(clusters) + 1.5), sharey=True,
                                     gridspec_kw={"width_ratios": [2, 1]})
y = range(len(clusters))
height = 0.8 / len(share_cols)
names = {"web_share": "D_web (text)", "speech_share": "D_speech (spoken books)"}
for i, col in enumerate(share_cols):
    label = names.get(col, f"D_active, γ = {col.removeprefix('active_share_gamma')}")
    ax_share.barh([v + (i - (len(share_cols) - 1) / 2) * height for v in y], clusters[col], height=height, label=label)
ax_share.set(yticks=list(y), yticklabels=clusters["label"], xlabel="share of the corpus")
ax_share.invert_yaxis()
ax_share.set_title("where each corpus falls among the clusters", fontsize=10)
ax_m.errorbar(clusters["M"], list(y), xerr=clusters["M_se"], fmt="o", color="black")
ax_m.set(xlabel="M(c): Stage I L_DIST on probes (nats per token)")
ax_m.set_title("misalignment per cluster (± se)", fontsize=10)
figures.legend_outside(fig, ax_share)
fig.tight_layout()
save_figure(fig, "active_domains", reports)

# %% [markdown]
# ## Stage II: the γ × budget sweep (Figure 6) and uniform vs active selection (Table 4)
#
# Every Stage II model resumes Stage I's pre-decay checkpoint and trains on D_speech, D_active and text with equal
# probability for the same number of positions; γ = 0 is uniform selection. The Stage I row is the main run,
# scored on the same items. Accuracy is the headline average over the miniature family's tasks (the first
# `active.family_items` items of each) of the best prompt format's headline accuracy; the paper benchmarks' average
# (the first `active.eval_items` items of every task and format) is in the columns ending in `_benchmarks`.

# %%
stage2 = stage2_results(params, root / "metrics", stage1_records, root / "data" / "stage2")
save_table(stage2, "stage2", reports,
           caption=f"Stage I and every Stage II model ({len(params.active.gammas)} γ × {len(params.active.budgets)} "
                   f"budgets, {params.active.tokens} positions each); budgets are fractions of D_speech's audio; "
                   f"accuracies ({evaluate['headline']}) on the first {params.active.family_items} items of each "
                   f"family task (the headline columns) and the first {params.active.eval_items} of each paper "
                   f"benchmark and format (the `_benchmarks` columns).")
per_task = stage2_per_task(params, stage1_records, root / "data" / "stage2",
                             [(0.0, params.active.budget), (params.active.gamma, params.active.budget)])
table4 = paper_tables.table4(per_task, uniform, active)
save_table(table4, "table4_uniform_vs_active", reports,
           caption=f"Table 4: speech accuracy (%) per task of Stage I and of Stage II with uniform (γ = 0) and active "
                   f"(γ = {params.active.gamma:g}) selection at a budget of {params.active.budget:g} of D_speech's "
                   f"audio (the first {params.active.family_items} items of each family task, the first "
                   f"{params.active.eval_items} of each paper benchmark and format), beside the paper's SALAD-3B "
                   f"(budget 1%, γ = 5; its average, the mean of its six cells, beside our benchmarks' average).")

stage1_row = stage2[stage2["stage"] == "I"].iloc[0]
cells = stage2[stage2["stage"] == "II"]
panels = [("speech_accuracy", "speech accuracy (average)"), ("text_accuracy", "text accuracy (average)"),
          ("M", "misalignment M (nats per token)")]
fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
gamma_colors = plt.cm.plasma([i / max(1, len(params.active.gammas) - 1) * 0.85
                              for i in range(len(params.active.gammas))])
shift = figures.offsets(len(params.active.gammas), log=True, spread=0.08)
for ax, (key, label) in zip(axes, panels):
    for gamma, color, marker, factor in zip(params.active.gammas, gamma_colors, figures.MARKERS, shift):
        row = cells[cells["gamma"] == gamma].sort_values("budget")
        ax.errorbar(row["budget"] * 100 * factor, row[key], yerr=row[f"{key}_se"], fmt=f"{marker}-", color=color,
                    markersize=5, capsize=2, label=f"γ = {gamma:g}")  # offsets keep coinciding γ visible
    ax.axhline(stage1_row[key], color="gray", linestyle="--", label="Stage I")
    if key.endswith("accuracy"):
        figures.chance_line(ax, cells["chance"].mean())
    ax.set(xscale="log", xlabel="synthesis budget (% of D_speech audio)", ylabel=f"{label}, ± se")
    ax.set_title(label.split(" (")[0], fontsize=10)
figures.legend_outside(fig, axes[-1])
fig.tight_layout()
save_figure(fig, "figure6_stage2_gamma_budget", reports)

# %% [markdown]
# ## Figure 7: per-category gains from Stage I to Stage II
#
# The active Stage II model (γ = `active.gamma`, budget `active.budget`) scored on every item of
# `active.category_tasks` the main run was scored on (stage `stage2-categories`), each task in Stage I's best speech
# format; per category (a family task is one category, MMSU splits into its subjects) an exact McNemar test on the
# paired items, Holm-adjusted over categories. Categories with a significant gain are highlighted.

# %%
formats = {t: evaluate["best"]["student"]["speech"]["tasks"][t]["format"] for t in category_tasks(params)}
categories = category_gains(stage1_records, root / "data" / "stage2_categories.jsonl", formats,
                            item_categories(list(formats), root / "data" / "prepared" / "mmsu.jsonl"))
save_table(categories, "categories", reports,
           caption=f"Speech {evaluate['headline']} (%) per category, Stage I vs Stage II (γ = "
                   f"{params.active.gamma:g}, budget {params.active.budget:g}), each task in Stage I's best speech "
                   f"format; gained/lost: items only Stage II / only Stage I answers; p: exact McNemar, "
                   f"p_adjusted: Holm.")
order = categories.sort_values("gain", ascending=False)
fig, ax = plt.subplots(figsize=(9, 3.8))
ax.bar(order["category"], order["gain"], color=["C2" if s else "C7" for s in order["improved"]])
for i, (_, r) in enumerate(order.iterrows()):
    ax.annotate(f"n={r['n']}", (i, r["gain"]), ha="center", va="bottom" if r["gain"] >= 0 else "top", fontsize=7)
ax.axhline(0, color="black", lw=0.8)
ax.set(ylabel="Stage II − Stage I accuracy (points)",
       title=f"Per category: {int(order['improved'].sum())} of {len(order)} significant gains "
             f"(Holm-adjusted p < 0.05, green)")
ax.tick_params(axis="x", rotation=35)
ax.set_xticks(range(len(order)), order["category"], ha="right")
fig.tight_layout()
save_figure(fig, "figure7_categories", reports)

# %% [markdown]
# ## Figure 8: per-task speech accuracy over training, Stage I then Stage II
#
# Stage I (the main run, after its decay) at its training positions, and the uniform and active Stage II models at
# the positions they have seen: Stage I's up to its pre-decay checkpoint plus Stage II's, on the Stage II cells'
# items. Stage II branches from the pre-decay checkpoint, so it can sit left of Stage I's decayed end point.

# %%
stage1_positions = json.loads((root / "metrics" / "train.json").read_text())["positions"]
pre_decay = checkpoint_positions(root / "data" / "models" / "student" / "pre_decay.pt")
seen = {column: pre_decay + json.loads((root / "metrics" / "stage2" / column / "train.json").read_text())["positions"]
        for column in (uniform, active)}
tasks = headline_tasks([t for t in per_task["task"] if t not in paper_tables.AVERAGE_ROWS])  # the family's, here
# each task's item count and chance level, from the active cell's records (every model here: the same items)
items = best_format_detail(summarize(read_jsonl(root / "data" / "stage2" / active / "eval.jsonl")), "speech",
                           evaluate["headline"])
fig, axes = plt.subplots(1, len(tasks), figsize=(2.8 * len(tasks), 3.2), sharey=False)
for ax, task in zip(axes, tasks):
    r = per_task[per_task["task"] == task].iloc[0]
    n, chance = items[task]["n"], items[task]["chance"]
    for name, column, x, style in (
            ("Stage I", "Stage I", stage1_positions, dict(marker="o", color="gray")),
            ("Stage II, uniform", uniform, seen[uniform] * 0.97, dict(marker="D", markerfacecolor="none",
                                                                       color="C0")),
            (f"Stage II, active γ = {params.active.gamma:g}", active, seen[active] * 1.03,
             dict(marker="s", color="C3"))):  # the two Stage II models trained as long: offset to stay visible
        ax.errorbar([x], [100 * r[column]], yerr=[100 * binomial_se(r[column], n)], linestyle="none", capsize=3,
                    label=name, **style)
    figures.chance_line(ax, 100 * chance)
    ax.set(title=task, xlabel="training positions")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
axes[0].set_ylabel(f"speech {evaluate['headline']} (%, ± binomial se)")
figures.legend_outside(fig, axes[0])
fig.tight_layout()
save_figure(fig, "figure8_stage1_vs_stage2", reports)

# %%
t4 = table4.set_index("task")
save_metrics({"M_stage1": stage1_row["M"],
              "M_uniform": float(cells[(cells["gamma"] == 0.0) & (cells["budget"] == params.active.budget)]["M"].iloc[0]),
              "M_active": float(cells[(cells["gamma"] == params.active.gamma)
                                      & (cells["budget"] == params.active.budget)]["M"].iloc[0]),
              "speech_accuracy_pct_uniform": t4.loc["average", "uniform"],
              "speech_accuracy_pct_active": t4.loc["average", "active"],
              "categories_improved": int(categories["improved"].sum())}, reports)
