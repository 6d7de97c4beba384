"""Rendering reports: notebooks executed by papermill, and the table/figure writers they call.

Notebooks are jupytext percent-format `.py` files (the only source). papermill cannot read them, so they are
converted to `.ipynb` first, executed with the `python3` kernel, and kept executed in `reports/notebooks/`. Their
parameters arrive through the notebook's `parameters` cell. Tables are written as csv and markdown, figures as
png and svg, all atomically.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from salad.atomic import atomic_path, write_text


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub markdown table (no extra dependency); NaN shows as an empty cell."""
    def cell(v):
        if isinstance(v, float):
            return "" if v != v else format(v, floatfmt)
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, name: str, reports: str | Path, caption: str = "") -> None:
    tables = Path(reports) / "tables"
    with atomic_path(tables / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    write_text(tables / f"{name}.md", (f"{caption}\n\n" if caption else "") + markdown_table(df))


def save_figure(fig, name: str, reports: str | Path) -> None:
    figures = Path(reports) / "figures"
    for ext in ("png", "svg"):
        with atomic_path(figures / f"{name}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")


def run_notebook(notebook: str | Path, out: str | Path, params_path: str | Path, timeout: int = 600,
                 parameters: dict | None = None) -> dict:
    import jupytext
    import papermill

    notebook, out = Path(notebook), Path(out)
    if not notebook.exists():
        raise FileNotFoundError(f"notebook {notebook} not found")
    executed = out / "notebooks" / f"{notebook.stem}.ipynb"
    cwd = Path.cwd()
    values = {"params_path": str(Path(params_path).resolve()), "reports": str(out.resolve()), "root": str(cwd)}
    values.update(parameters or {})
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(executed) as target:
        source = Path(tmpdir) / f"{notebook.stem}.ipynb"
        jupytext.write(jupytext.read(notebook), source, fmt="ipynb")
        papermill.execute_notebook(str(source), str(target), parameters=values, kernel_name="python3",
                                   cwd=str(cwd), execution_timeout=timeout, progress_bar=False)
    return {"notebook": str(notebook), "executed": str(executed), "seconds": round(time.time() - t0, 1)}
