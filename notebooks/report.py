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
# # SALAD in miniature: Stage I summary
#
# Misalignment M, forgetting F and benchmark accuracy of the speech-adapted student against its teacher, and the
# student's training curves. Numbers come from the pipeline's metric files; this notebook only loads, tabulates
# and plots them.

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

from salad.config import load_params
from salad.report import save_figure, save_table

root = Path(root)
params = load_params(params_path)
metrics = {name: json.loads((root / "metrics" / f"{name}.json").read_text())
           for name in ("teacher", "train", "measure", "evaluate")}

# %% [markdown]
# ## Misalignment and forgetting (nats per token, held-out broad-domain documents)

# %%
m = metrics["measure"]
rows = [
    ("M (misalignment)", m["M"], m["M_se"]),
    ("M, shuffled speech", m["M_shuffled"], m["M_shuffled_se"]),
    ("M − M shuffled", m["M_minus_shuffled"], m["M_minus_shuffled_se"]),
    ("M, 1st token after speech", m["M_first1"], m["M_first1_se"]),
    ("M, first 3 tokens after speech", m["M_first3"], m["M_first3_se"]),
    ("M first 3 − shuffled", m["M_first3_minus_shuffled"], m["M_first3_minus_shuffled_se"]),
    ("F (forgetting)", m["F"], float("nan")),
    ("teacher text perplexity", m["teacher_text_perplexity"], float("nan")),
    ("student text perplexity", m["student_text_perplexity"], float("nan")),
]
measures = pd.DataFrame(rows, columns=["measure", "value", "standard error"])
save_table(measures, "misalignment_forgetting", reports,
           caption=f"M and F of the Stage I student (α = {params.alpha}); standard errors over "
                   f"{m['layouts']} span layouts, paired for differences.")
measures

# %% [markdown]
# ## Benchmarks: teacher (text) against student (text and speech), the cascade and a second voice
#
# Every model, task, format and mode; `skipped` items did not fit the model's window (speech mode binds).

# %%
acc_rows = []
for model, tasks in metrics["evaluate"]["results"].items():
    for task, formats in tasks.items():
        for fmt, modes in formats.items():
            for mode, r in modes.items():
                acc_rows.append({"model": model, "task": task, "format": fmt, "mode": mode, "n": r["n"],
                                 "skipped": r["skipped"], "acc": r["acc"], "acc_norm": r["acc_norm"],
                                 "acc_bytes": r["acc_bytes"], "chance": r["chance"]})
accuracy = pd.DataFrame(acc_rows)
save_table(accuracy, "benchmarks", reports,
           caption=f"Accuracy (headline: {metrics['evaluate']['headline']}); chance = mean of 1/number of choices.")
accuracy

# %% [markdown]
# ### Best prompt format and the text–speech gaps (paper Tables 3, 5 and 8)
#
# Each model and mode in its best prompt format per task (the paper reports every model under its best format);
# a gap is the teacher's text accuracy minus the system's (lower is better): Table 3's gap for the student's speech
# and the cascade, Table 5's text gap for the student's text, and the second voice's speech gap (Table 8).

# %%
ev = metrics["evaluate"]
systems = sorted(((model, mode) for model, modes in ev["best"].items() for mode in modes),
                 key=lambda s: (s != ("teacher", "text"), s))  # the reference first
gap_of = {tuple(g["system"].split("/")): (name, g) for name, g in ev["gaps"].items()}
gap_rows = []
for task in [*ev["best"]["teacher"]["text"]["tasks"], "average"]:
    row = {"task": task, "shots": ev["shots"].get(task, "")}
    for model, mode in systems:
        best = ev["best"][model][mode]
        entry = best["tasks"].get(task) if task != "average" else {"format": "", ev["headline"]: best["average"]}
        row[f"{model} {mode}"] = entry[ev["headline"]] if entry else float("nan")
        row[f"{model} {mode} format"] = entry["format"] if entry else ""
        if (model, mode) in gap_of:
            name, g = gap_of[(model, mode)]
            row[f"gap {name}"] = g["tasks"].get(task, float("nan")) if task != "average" else g["average"]
    gap_rows.append(row)
gaps = pd.DataFrame(gap_rows)
save_table(gaps, "benchmark_gaps", reports,
           caption=f"Best-format {ev['headline']} per model, mode and task, and the gaps to the teacher's text "
                   f"accuracy (speech: Table 3, text: Table 5, cascade: the topline, {ev['asr']}; speech_voice2: "
                   f"second voice {ev['second_voice']}, Table 8). Shots per task as used (cap {ev['shots_cap']}, "
                   f"speech window {ev['speech_window']} positions).")
gaps

# %% [markdown]
# ## Training curves

# %%
def curve(stage, name):
    path = root / "dvclive" / stage / "plots" / "metrics" / "train" / f"{name}.tsv"
    return pd.read_csv(path, sep="\t")

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
t = curve("teacher", "loss")
axes[0].plot(curve("teacher", "tokens")["tokens"] / 1e6, t["loss"])
axes[0].set(title="teacher: next-token loss", xlabel="training tokens (M)", ylabel="nats per token")

student = curve("train", "positions")
for name in ("kl", "nll", "speech_batch"):
    student = student.merge(curve("train", name), on="step")
for is_speech, label, style in ((1, "interleaved speech batches", "-"), (0, "text-only batches", ":")):
    rows = student[student["speech_batch"] == is_speech]
    axes[1].plot(rows["positions"] / 1e6, rows["kl"], style, color="C1", label=f"L_DIST, {label}")
    axes[1].plot(rows["positions"] / 1e6, rows["nll"], style, color="C2", label=f"L_NLL, {label}")
axes[1].set(title=f"student (α = {params.alpha}): training losses", xlabel="sequence positions (M)",
            ylabel="nats per masked position", yscale="log")
axes[1].legend(fontsize=7)

groups = [("all\npositions", "M", "M_shuffled"), ("1st token\nafter speech", "M_first1", "M_shuffled_first1"),
          ("first 3 tokens\nafter speech", "M_first3", "M_shuffled_first3")]
x = range(len(groups))
axes[2].bar([i - 0.2 for i in x], [m[a] for _, a, _ in groups], width=0.4, yerr=[m[a + "_se"] for _, a, _ in groups],
            label="real speech", color="C0")
axes[2].bar([i + 0.2 for i in x], [m[b] for _, _, b in groups], width=0.4, yerr=[m[b + "_se"] for _, _, b in groups],
            label="shuffled speech (another document's frames)", color="C7")
axes[2].set_xticks(list(x), [g for g, _, _ in groups])
axes[2].set(title=f"misalignment M (F = {m['F']:.3g})", ylabel="KL, nats per token")
axes[2].legend(fontsize=7, loc="upper left")
fig.tight_layout()
save_figure(fig, "training_and_misalignment", reports)

# %% [markdown]
# ## The analysis grid: M, F and accuracy over training tokens, by α and data side (paper Figures 4 and 5)
#
# Every cell (data side × α) is one run whose smaller budgets branch their own learning-rate decays; each point
# is one model. `speech` is D_speech (books in several voices: the narrow natural side), `broad` is D_broad
# (D_web documents in the fixed voice: the broad synthetic side). Accuracy is the average over tasks of the best
# prompt format's headline accuracy.

# %%
from salad.grid import grid_results

grid = grid_results(params, root / "metrics")
save_table(grid, "grid", reports,
           caption=f"The analysis grid: {len(grid)} models ({len(params.grid.alphas)} α × {len(params.grid.data)} "
                   f"data sides × {len(params.grid.budgets) + 1} budgets); M ± standard error over "
                   f"{params.measure.layouts} span layouts; accuracies are {metrics['evaluate']['headline']}.")

rows = [("M", "misalignment M (nats per token)", True), ("F", "forgetting F (nats per token)", True),
        ("speech_accuracy", "speech accuracy (average)", False), ("text_accuracy", "text accuracy (average)", False)]
fig, axes = plt.subplots(len(rows), len(params.grid.data), figsize=(5.2 * len(params.grid.data), 3.2 * len(rows)),
                         sharex=True, sharey="row", squeeze=False)
colors = plt.cm.viridis([i / max(1, len(params.grid.alphas) - 1) for i in range(len(params.grid.alphas))])
for col, data in enumerate(params.grid.data):
    for r, (key, label, log) in enumerate(rows):
        ax = axes[r][col]
        for alpha, color in zip(params.grid.alphas, colors):
            cell = grid[(grid["data"] == data) & (grid["alpha"] == alpha)]
            ax.plot(cell["positions"], cell[key], "o-", color=color, label=f"α = {alpha:g}")
            if key == "M":
                ax.fill_between(cell["positions"], cell["M"] - cell["M_se"], cell["M"] + cell["M_se"], color=color,
                                alpha=0.2)
        ax.set(xscale="log", yscale="log" if log else "linear", ylabel=label if col == 0 else None)
        if r == 0:
            ax.set_title({"speech": "D_speech (narrow, natural side)", "broad": "D_broad (broad, synthetic side)"}[data])
        if r == len(rows) - 1:
            ax.set_xlabel("training positions")
axes[0][-1].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, "grid_over_tokens", reports)
grid

# %% [markdown]
# ## Active selection: where the corpora fall, where the model is misaligned, what Stage II drew (paper Figures 2 and 9)
#
# D_web's selection pool is clustered (balanced k-means on sentence embeddings); each cluster is labelled by its
# most distinctive terms (class-based TF-IDF). D_speech's texts are assigned to the nearest centroid. M(c) is the
# Stage I model's L_DIST on the cluster's probe documents; D_active is drawn in proportion to P_web(c)·M(c)^γ.

# %%
from salad.active_data import cluster_table

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
ax_share.legend(fontsize=8)
ax_m.errorbar(clusters["M"], list(y), xerr=clusters["M_se"], fmt="o", color="black")
ax_m.set(xlabel="M(c): Stage I L_DIST on probes (nats per token)")
fig.tight_layout()
save_figure(fig, "active_domains", reports)
clusters

# %% [markdown]
# ## Stage II: uniform vs active selection (paper Table 4) and the γ × budget sweep (paper Figures 6 and 8)
#
# Every Stage II model resumes Stage I's pre-decay checkpoint and trains on D_speech, D_active and text with equal
# probability for the same number of positions; γ = 0 is uniform selection. The Stage I row is the main run,
# scored on the same benchmark items. Accuracy is the average over tasks of the best prompt format's headline
# accuracy.

# %%
from salad.stage2 import stage2_results

stage2 = stage2_results(params, root / "metrics", root / "data" / "eval" / "student.jsonl", root / "data" / "stage2")
save_table(stage2, "stage2", reports,
           caption=f"Stage I and every Stage II model ({len(params.active.gammas)} γ × {len(params.active.budgets)} "
                   f"budgets, {params.active.tokens} positions each); budgets are fractions of D_speech's audio; "
                   f"accuracies ({metrics['evaluate']['headline']}) on the first {params.active.eval_items} items "
                   f"of each task and format.")
table4 = stage2[(stage2["stage"] == "I") | ((stage2["budget"] == params.active.budget)
                                            & stage2["gamma"].isin([0.0, params.active.gamma]))]
save_table(table4, "table4_uniform_vs_active", reports,
           caption=f"Uniform (γ = 0) vs active (γ = {params.active.gamma:g}) selection at a budget of "
                   f"{params.active.budget:g} of D_speech's audio (paper Table 4), beside Stage I.")

stage1_row = stage2[stage2["stage"] == "I"].iloc[0]
cells = stage2[stage2["stage"] == "II"]
panels = [("speech_accuracy", "speech accuracy (average)"), ("text_accuracy", "text accuracy (average)"),
          ("M", "misalignment M (nats per token)")]
fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
colors = plt.cm.plasma([i / max(1, len(params.active.gammas) - 1) * 0.85 for i in range(len(params.active.gammas))])
for ax, (key, label) in zip(axes, panels):
    for gamma, color in zip(params.active.gammas, colors):
        row = cells[cells["gamma"] == gamma].sort_values("budget")
        ax.plot(row["budget"] * 100, row[key], "o-", color=color, label=f"γ = {gamma:g}")
    ax.axhline(stage1_row[key], color="gray", linestyle="--", label="Stage I")
    ax.set(xscale="log", xlabel="synthesis budget (% of D_speech audio)", ylabel=label)
axes[0].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, "stage2_gamma_budget", reports)
table4
