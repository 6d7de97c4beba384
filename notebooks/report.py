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
# ## Benchmarks: teacher (text) against student (text and speech)

# %%
acc_rows = []
for model, tasks in metrics["evaluate"]["results"].items():
    for task, formats in tasks.items():
        for fmt, modes in formats.items():
            for mode, r in modes.items():
                acc_rows.append({"model": model, "task": task, "format": fmt, "mode": mode, "n": r["n"],
                                 "acc": r["acc"], "acc_norm": r["acc_norm"], "acc_bytes": r["acc_bytes"],
                                 "chance": r["chance"]})
accuracy = pd.DataFrame(acc_rows)
save_table(accuracy, "benchmarks", reports,
           caption=f"Accuracy (headline: {metrics['evaluate']['headline']}); chance = mean of 1/number of choices.")
accuracy

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
