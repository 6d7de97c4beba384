"""The registry of every table and figure the report notebooks write, with its paper counterpart.

One notebook per DVC stage (`report-<notebook>`), each writing into `reports/<notebook>/` only, so that a change of
one parameter re-renders only the notebooks that depend on it. `save_table` and `save_figure` refuse a name that is
not registered here under the notebook being rendered, and `salad report-index` writes `reports/README.md` from this
registry, `dvc.yaml` and the files on disk. A test checks that every table and figure of the paper with results
(Figures 1–9, Tables 1–5, 7 and 8) has at least one artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NOTEBOOKS = ("stage1", "analysis", "stage2", "findings")
NOTEBOOK_PARAMS = {  # the params each notebook's stage declares in dvc.yaml (a test keeps the two equal)
    "stage1": ("alpha", "measure.layouts"),
    "analysis": ("alpha", "grid", "measure.layouts"),
    "stage2": ("active", "measure.layouts"),
    "findings": ("grid", "active"),
}
PAPER = (*(f"Figure {i}" for i in range(1, 10)), *(f"Table {i}" for i in (1, 2, 3, 4, 5, 7, 8)))


@dataclass(frozen=True)
class Artifact:
    """A table (csv + md) or a figure (png + svg) written by one notebook."""

    name: str
    kind: Literal["table", "figure"]
    notebook: str
    paper: tuple[str, ...]
    """The paper's tables and figures this one regenerates (empty: a diagnostic the paper does not print)."""
    what: str

    def __post_init__(self):
        if self.kind not in ("table", "figure"):
            raise ValueError(f"artifact {self.name}: kind must be 'table' or 'figure', not {self.kind!r}")
        if self.notebook not in NOTEBOOKS:
            raise ValueError(f"artifact {self.name}: unknown notebook {self.notebook!r} (one of {NOTEBOOKS})")
        unknown = [p for p in self.paper if p not in PAPER]
        if unknown:
            raise ValueError(f"artifact {self.name}: {unknown} are not tables or figures of the paper with results")

    @property
    def files(self) -> tuple[str, ...]:
        """Paths relative to the reports folder."""
        if self.kind == "table":
            return tuple(f"{self.notebook}/tables/{self.name}.{ext}" for ext in ("csv", "md"))
        return tuple(f"{self.notebook}/figures/{self.name}.{ext}" for ext in ("png", "svg"))


ARTIFACTS: tuple[Artifact, ...] = (
    # Stage I: the main run
    Artifact("misalignment_forgetting", "table", "stage1", (),
             "M (with its shuffled-speech controls) and F of the main run"),
    Artifact("benchmarks", "table", "stage1", (),
             "every model, task, prompt format and mode: the headline accuracy, acc, acc_norm, acc_bytes"),
    Artifact("benchmark_gaps", "table", "stage1", ("Table 3", "Table 5", "Table 8"),
             "best format per model and task and the gaps to the teacher's text accuracy"),
    Artifact("table3_speech", "table", "stage1", ("Table 3",),
             "speech accuracy and gap per task, student and cascade, beside SALAD-3B and the ASR cascade"),
    Artifact("table5_text", "table", "stage1", ("Table 5",),
             "text accuracy and gap per task beside SALAD-3B"),
    Artifact("table8_second_voice", "table", "stage1", ("Table 8",),
             "speech accuracy and gap in a second voice beside SALAD-3B on VoiceBench"),
    Artifact("training_and_misalignment", "figure", "stage1", (),
             "teacher and student training curves; M with real and shuffled speech"),
    # the analysis grid
    Artifact("grid", "table", "analysis", ("Figure 4", "Figure 5"),
             "every grid model: α, data side, positions, M, F, accuracies"),
    Artifact("figure1_gap_vs_data", "figure", "analysis", ("Figure 1",),
             "text–speech gap against training positions; teacher text vs student speech per task"),
    Artifact("figure4_grid_M_F_speech", "figure", "analysis", ("Figure 4",),
             "M, F and speech accuracy over training positions by α and data side"),
    Artifact("figure5_grid_text", "figure", "analysis", ("Figure 5",),
             "text accuracy over training positions by α and data side"),
    Artifact("table1", "table", "analysis", ("Table 1",), "univariate and partial R² of M and F"),
    Artifact("figure3_accuracy_vs_M_F", "figure", "analysis", ("Figure 3",),
             "speech accuracy against ln M and text accuracy against F with OLS and 95% bands"),
    Artifact("table7", "table", "analysis", ("Table 7",), "type-II ANCOVA with α fixed effects and ln tokens"),
    Artifact("table2", "table", "analysis", ("Table 2",), "scaling laws M = E + B·D^(−β) per α"),
    # Stage II: active selection
    Artifact("active_clusters", "table", "stage2", ("Figure 2", "Figure 9"),
             "clusters: terms, corpus shares, M(c), D_active shares"),
    Artifact("active_domains", "figure", "stage2", ("Figure 2", "Figure 9"),
             "where D_web, D_speech and D_active fall among the clusters, and M(c)"),
    Artifact("stage2", "table", "stage2", ("Figure 6",), "every Stage II model (γ × budget) beside Stage I"),
    Artifact("table4_uniform_vs_active", "table", "stage2", ("Table 4",),
             "speech accuracy per task: Stage I, uniform and active Stage II, beside the paper"),
    Artifact("figure6_stage2_gamma_budget", "figure", "stage2", ("Figure 6",),
             "Stage II accuracy and M over synthesis budget by γ"),
    Artifact("categories", "table", "stage2", ("Figure 7",),
             "speech accuracy per category (family task, or MMSU subject), Stage I vs Stage II, paired exact tests"),
    Artifact("figure7_categories", "figure", "stage2", ("Figure 7",),
             "per-category gains from Stage I to Stage II, significant ones marked"),
    Artifact("figure8_stage1_vs_stage2", "figure", "stage2", ("Figure 8",),
             "per-task speech accuracy over training positions, Stage I then Stage II"),
    # the paper's claims, checked
    Artifact("findings", "table", "findings", (),
             "each qualitative claim of the paper: reproduced or not in the miniature world, with numbers"),
)

BY_NAME = {a.name: a for a in ARTIFACTS}
if len(BY_NAME) != len(ARTIFACTS):
    raise RuntimeError("duplicate artifact names in salad.analysis.artifacts.ARTIFACTS")


def artifact(name: str, kind: str, notebook: str) -> Artifact:
    """The registered artifact, or a clear error when `name` is not registered as a `kind` of `notebook`."""
    a = BY_NAME.get(name)
    if a is None or a.kind != kind or a.notebook != notebook:
        where = f"registered as a {a.kind} of notebook {a.notebook!r}" if a else "not registered"
        raise KeyError(f"{kind} {name!r} of notebook {notebook!r} is {where}: add or fix it in "
                       f"salad.analysis.artifacts.ARTIFACTS (reports/README.md is generated from that registry)")
    return a


def coverage() -> dict[str, list[str]]:
    """For every table and figure of the paper with results, the artifacts that regenerate it."""
    return {p: [a.name for a in ARTIFACTS if p in a.paper] for p in PAPER}
