"""The report stages: each notebook executed by papermill into its folder, and the index of every report.

Notebooks are jupytext percent-format `.py` files (the only source). papermill cannot read them, so they are
converted to `.ipynb` first, executed with the `python3` kernel, and kept executed as `reports/<notebook>/<notebook>
.ipynb`. Their parameters arrive through the notebook's `parameters` cell; `reports` is the notebook's own folder.
What a notebook writes (salad.analysis.report) is registered in `salad.analysis.artifacts`; `report_index` renders
`reports/README.md` from that registry.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from unittest import mock
from pathlib import Path

from salad.analysis.artifacts import ARTIFACTS, NOTEBOOK_PARAMS, NOTEBOOKS, coverage
from salad.storage.atomic import atomic_path, write_text


def report(notebook: str | Path, out: str | Path, params_path: str | Path, timeout: int = 600,
           parameters: dict | None = None) -> dict:
    """Stage `report-<notebook>`: execute `notebook` with papermill into `out` (reports/<notebook>/), with the params
    file, its own folder and the project root as parameters; `timeout` seconds per cell."""
    import jupytext
    import papermill

    notebook, out = Path(notebook), Path(out)
    if not notebook.exists():
        raise FileNotFoundError(f"notebook {notebook} not found")
    if out.name != notebook.stem:
        raise ValueError(f"notebook {notebook} renders into reports/{notebook.stem}/, not {out} (the registry "
                         f"salad.analysis.artifacts checks names against the folder's name)")
    executed = out / f"{notebook.stem}.ipynb"
    cwd = Path.cwd()
    # paths as given, relative to the project root where the kernel runs: the executed notebook names no machine
    values = {"params_path": _portable(params_path, cwd), "reports": _portable(out, cwd), "root": "."}
    values.update(parameters or {})
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(executed) as target, \
            mock.patch.dict(os.environ, KERNEL_ENV):  # the kernel inherits this environment, restored after
        source = Path(tmpdir) / f"{notebook.stem}.ipynb"
        jupytext.write(jupytext.read(notebook), source, fmt="ipynb")
        papermill.execute_notebook(str(source), str(target), parameters=values, kernel_name="python3",
                                   cwd=str(cwd), execution_timeout=timeout, progress_bar=True)
        target.write_text(json.dumps(reproducible(json.loads(target.read_text())), indent=1, ensure_ascii=False)
                          + "\n")
    return {"notebook": str(notebook), "executed": str(executed), "seconds": round(time.time() - t0, 1)}


KERNEL_ENV = {
    # transformers imports tqdm.auto, which warns in a kernel without ipywidgets; the warning would be the only
    # stderr output of the executed notebooks, and it names this machine's site-packages
    # (by its message: a category outside the standard library cannot be named before site-packages are on the path)
    "PYTHONWARNINGS": "ignore:IProgress not found",
    # figures are written as files and shown inline as those files' png (salad.analysis.report.save_figure)
    "MPLBACKEND": "Agg",
}


def _portable(path: str | Path, cwd: Path) -> str:
    """`path` relative to `cwd` when it lies under it (the notebook runs there), else as given."""
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(cwd))
        except ValueError:
            return str(path)
    return str(path)


RUN_METADATA = ("start_time", "end_time", "duration", "input_path", "output_path", "environment_variables",
                "exception", "status")


def reproducible(nb: dict) -> dict:
    """An executed notebook without what changes from run to run: papermill's and the kernel's timestamps,
    durations and temporary paths, and random cell ids (the outputs, parameters and source stay). Same inputs,
    same bytes. Edits `nb` in place and returns it."""
    papermill_meta = nb.get("metadata", {}).get("papermill", {})
    for key in RUN_METADATA:
        papermill_meta.pop(key, None)
    for i, cell in enumerate(nb.get("cells", [])):
        if "id" in cell:  # nbformat 4.5 ids, random when the source was converted: numbered instead
            cell["id"] = f"cell-{i}"
        meta = cell.get("metadata", {})
        meta.pop("execution", None)
        meta.pop("papermill", None)
    return nb


def report_index(reports: str | Path, out: str | Path) -> dict:
    """reports/README.md: every table and figure with its paper counterpart, files, the stage that made it and the
    params that stage depends on, then which of our artifacts regenerate each of the paper's, then the findings.
    A registered file that is missing is an error: the index never lists what was not made."""
    reports = Path(reports)
    missing = [f for a in ARTIFACTS for f in a.files if not (reports / f).exists()]
    if missing:
        raise FileNotFoundError(f"registered report files are missing (run `dvc repro`): {missing}")

    def params_of(notebook: str) -> str:
        return ", ".join(f"`{n}`" for n in NOTEBOOK_PARAMS[notebook]) or "none"

    lines = ["# Reports", "",
             "Generated by `salad report-index` (stage `report-index`) from `salad.analysis.artifacts`; do not edit by hand.",
             "Each notebook in `notebooks/` is executed by papermill in its own DVC stage `report-<notebook>` and "
             "writes only `reports/<notebook>/`: the executed notebook, `tables/` (csv and markdown), `figures/` "
             "(png and svg) and `metrics.json`. Tables show the paper's published value beside ours where one "
             "exists (`paper_*` columns, from `data/paper/published.csv`).", ""]
    for notebook in NOTEBOOKS:
        lines += [f"## `{notebook}`: `notebooks/{notebook}.py` → `reports/{notebook}/{notebook}.ipynb`", "",
                  f"Stage `report-{notebook}`; params: {params_of(notebook)}.", "",
                  "| artifact | paper | what | files |", "|---|---|---|---|"]
        for a in ARTIFACTS:
            if a.notebook == notebook:
                files = " ".join(f"[{Path(f).suffix[1:]}]({f})" for f in a.files)
                lines.append(f"| {a.kind} `{a.name}` | {', '.join(a.paper) or '—'} | {a.what} | {files} |")
        lines.append("")
    lines += ["## The paper's tables and figures", "", "| paper | regenerated by |", "|---|---|"]
    lines += [f"| {p} | {', '.join(f'`{n}`' for n in names)} |" for p, names in coverage().items()]
    lines += ["", "Table 6 (prompt templates) has no results: the templates are the task registry, "
              "`salad.evaluation.tasks`.", ""]
    findings = reports / "findings" / "tables" / "findings.md"
    lines += ["## Findings: the paper's claims in the miniature world", "", findings.read_text().strip(), ""]
    write_text(out, "\n".join(lines))
    return {"index": str(out)}
