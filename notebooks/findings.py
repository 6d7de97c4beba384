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
# # SALAD in miniature: the paper's claims, checked
#
# For each qualitative claim of the paper, whether the miniature world reproduces it, decided by the rule in the
# `rule` column (`salad.analysis.findings`) on the measured grid, Stage II and Table 1, with the numbers behind the verdict.
# The same table closes `reports/README.md`.

# %% tags=["parameters"]
params_path = "params.yaml"
reports = "reports"
root = "."

# %%
import json
from pathlib import Path

import pandas as pd

from salad.analysis import findings, paper_tables
from salad.analysis import regressions as analysis
from salad.config import load_params, stage2_cell_name
from salad.analysis.report import save_metrics, save_table
from salad.analysis.results import grid_results, stage2_per_task, stage2_results

root = Path(root)
params = load_params(params_path)
evaluate = json.loads((root / "metrics" / "evaluate.json").read_text())
stage1_records = root / "data" / "eval" / "student.jsonl"
grid = grid_results(params, root / "metrics")
stage2 = stage2_results(params, root / "metrics", stage1_records, root / "data" / "stage2")
per_task = stage2_per_task(params, stage1_records, root / "data" / "stage2",
                             [(0.0, params.active.budget), (params.active.gamma, params.active.budget)])
table4 = paper_tables.table4(per_task, stage2_cell_name(0.0, params.active.budget),
                             stage2_cell_name(params.active.gamma, params.active.budget))
chance = findings.average_chance(evaluate)

# %%
claims = findings.findings(grid, stage2, analysis.or_reason(analysis.table1, grid), table4, params.active.gamma, params.active.budget,
                           chance, narrow=analysis.NARROW)
save_table(claims, "findings", reports,
           caption=f"The paper's claims in the miniature world (one seed; differences in M count beyond "
                   f"{findings.Z:g} standard errors; average chance accuracy {100 * chance:.1f}%).")
save_metrics({f"claims_{v.replace(' ', '_')}": int((claims["verdict"] == v).sum())
              for v in ("yes", "partly", "no", "not measurable")}, reports)
pd.set_option("display.max_colwidth", None)
