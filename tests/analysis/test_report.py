"""The report registry (salad.analysis.artifacts), its writers and index (salad.analysis.report), and dvc.yaml's report stages."""

import json
import re
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from salad.analysis.artifacts import ARTIFACTS, NOTEBOOK_PARAMS, NOTEBOOKS, PAPER, Artifact, coverage  # noqa: E402
from salad.analysis.report import save_figure, save_metrics, save_table  # noqa: E402
from salad.stages.report import report_index  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_every_result_of_the_paper_is_regenerated_by_an_artifact():
    missing = [p for p, names in coverage().items() if not names]
    assert missing == []
    assert set(coverage()) == set(PAPER) and "Table 6" not in PAPER  # Table 6 holds prompts, no results


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_writes_exactly_its_registered_artifacts(notebook):
    source = (ROOT / "notebooks" / f"{notebook}.py").read_text()
    written = set(re.findall(r'"([A-Za-z0-9_]+)",\s*reports\b', source))  # save_*(obj, "name", reports, ...)
    registered = {a.name for a in ARTIFACTS if a.notebook == notebook}
    assert written == registered


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_dvc_stage_of_each_notebook_declares_its_folder_and_params(notebook):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stage = stages[f"report-{notebook}"]
    assert stage["cmd"] == f"salad report --notebook notebooks/{notebook}.py --out reports/{notebook}"
    assert [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]] == [f"reports/{notebook}"]
    assert tuple(stage["params"]) == NOTEBOOK_PARAMS[notebook]
    assert f"notebooks/{notebook}.py" in stage["deps"]
    assert f"reports/{notebook}" in stages["report-index"]["deps"]


def test_artifact_validation_names_the_problem():
    with pytest.raises(ValueError, match="not tables or figures of the paper"):
        Artifact("x", "table", "stage1", ("Table 6",), "prompts")
    with pytest.raises(ValueError, match="unknown notebook"):
        Artifact("x", "table", "report", (), "")
    with pytest.raises(ValueError, match="kind"):
        Artifact("x", "plot", "stage1", (), "")


def test_writers_refuse_unregistered_names_and_write_registered_ones(tmp_path):
    out = tmp_path / "stage1"
    frame = pd.DataFrame({"a": [1.0, float("nan")], "b": ["x", "y"]})
    with pytest.raises(KeyError, match="not registered"):
        save_table(frame, "no_such_table", out)
    with pytest.raises(KeyError, match="notebook 'analysis'"):
        save_table(frame, "benchmarks", tmp_path / "analysis")  # a stage1 table written by another notebook
    save_table(frame, "benchmarks", out, caption="caption")
    assert (out / "tables" / "benchmarks.md").read_text().startswith("caption\n\n| a | b |")
    assert pd.read_csv(out / "tables" / "benchmarks.csv")["b"].tolist() == ["x", "y"]
    fig, ax = plt.subplots()
    with pytest.raises(KeyError, match="registered as a table"):
        save_figure(fig, "benchmarks", out)
    save_figure(fig, "training_and_misalignment", out)
    assert {p.name for p in (out / "figures").iterdir()} == {"training_and_misalignment.png",
                                                            "training_and_misalignment.svg"}
    save_metrics({"M": 0.5, "gap": float("nan")}, out)
    assert json.loads((out / "metrics.json").read_text()) == {"M": 0.5, "gap": None}


def test_index_lists_every_artifact_and_refuses_missing_files(tmp_path):
    for a in ARTIFACTS:
        for f in a.files:
            (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / f).write_text("| claim | verdict |\n|---|---|\n| c | yes |\n" if a.name == "findings" else "x")
    report_index(tmp_path, tmp_path / "README.md")
    index = (tmp_path / "README.md").read_text()
    for a in ARTIFACTS:
        assert f"`{a.name}`" in index and all(f"({f})" in index for f in a.files)
    assert "| Figure 7 | `categories`, `figure7_categories` |" in index
    assert "| c | yes |" in index
    (tmp_path / ARTIFACTS[0].files[0]).unlink()
    with pytest.raises(FileNotFoundError, match=ARTIFACTS[0].files[0]):
        report_index(tmp_path, tmp_path / "README.md")


READERS = [*(f"notebooks/{n}.py" for n in NOTEBOOKS),
           *(f"src/salad/analysis/{m.name}" for m in sorted((ROOT / "src/salad/analysis").glob("*.py")))]


@pytest.mark.parametrize("source", READERS)
def test_reports_read_results_without_importing_a_stage(source):
    """The notebooks and salad.analysis read results through salad.analysis, salad.evaluation and salad.config,
    never salad.stages: a report stage's deps are its readers, so editing a reader re-renders reports and retrains
    nothing."""
    text = (ROOT / source).read_text()
    assert not re.search(r"^\s*(from|import)\s+salad\.stages\b", text, re.MULTILINE), source


FIGURE_SCRIPT = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from salad.analysis.report import save_figure
fig, ax = plt.subplots()
ax.plot([0, 1, 2], [1, 0, 2], label="a")
ax.fill_between([0, 1, 2], 0, 1, alpha=0.2)
ax.legend()
save_figure(fig, "training_and_misalignment", sys.argv[1])
"""


def test_a_figure_saved_by_two_processes_has_the_same_bytes(tmp_path):
    """Same params, same bytes, figures included: no svg date, no per-process clip-path ids."""
    import subprocess
    import sys

    outs = [tmp_path / f"run{i}" / "stage1" for i in range(2)]
    for out in outs:
        subprocess.run([sys.executable, "-c", FIGURE_SCRIPT, str(out)], check=True)
    for ext in ("png", "svg"):
        a, b = ((out / "figures" / f"training_and_misalignment.{ext}").read_bytes() for out in outs)
        assert a == b, ext
    assert b"<dc:date>" not in (outs[0] / "figures" / "training_and_misalignment.svg").read_bytes()


TINY_NOTEBOOK = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
params_path = "params.yaml"
reports = "reports"
root = "."

# %%
import matplotlib.pyplot as plt
import transformers  # imports tqdm.auto, which warns in a kernel without ipywidgets

import pandas as pd

from salad.analysis.report import save_figure, save_table

save_table(pd.DataFrame({"measure": ["M"], "value": [0.07]}), "misalignment_forgetting", reports, caption="a caption")
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0], "o-")
save_figure(fig, "training_and_misalignment", reports)
print(params_path, reports, root)
'''


def test_an_executed_notebook_shows_its_figures_inline_and_names_no_machine(tmp_path, monkeypatch):
    """report(): each figure inline as the very png beside it and each table under its caption; relative parameters;
    no timestamps, durations or temporary paths; no stderr; so the same notebook executed twice has the same bytes."""
    import base64

    from salad.stages.report import report

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "stage1.py").write_text(TINY_NOTEBOOK)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    monkeypatch.chdir(tmp_path)
    executed = []
    for attempt in range(2):
        report(tmp_path / "notebooks" / "stage1.py", tmp_path / "reports" / "stage1", tmp_path / "params.yaml")
        executed.append((tmp_path / "reports" / "stage1" / "stage1.ipynb").read_bytes())
    assert executed[0] == executed[1]
    text = executed[0].decode()
    assert str(tmp_path) not in text and "/tmp" not in text and "start_time" not in text, text
    nb = json.loads(text)
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    png = (tmp_path / "reports" / "stage1" / "figures" / "training_and_misalignment.png").read_bytes()
    assert len(images) == 1 and base64.b64decode(images[0]) == png
    assert not [o for o in outputs if o.get("name") == "stderr"]
    shown = [o["data"] for o in outputs if "text/html" in o.get("data", {}) or "text/markdown" in o.get("data", {})]
    assert any("a caption" in "".join(d.get("text/markdown", "")) for d in shown)  # the table, under its caption
    assert any("0.07" in "".join(d.get("text/html", "")) for d in shown)
    assert any("params.yaml reports/stage1 ." in "".join(o.get("text", "")) for o in outputs)
