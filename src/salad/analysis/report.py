"""The writers the report notebooks call: tables, figures and headline numbers, under registered names only.

Tables are written as csv and markdown, figures as png and svg, headline numbers as `metrics.json` (a DVC metrics
file), all atomically, and only under names registered in `salad.analysis.artifacts`, into the notebook's own folder
`reports/<notebook>/`. The notebooks are executed, and `reports/README.md` rendered from the registry, by the report
stages (salad.stages.report).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from salad.analysis.artifacts import artifact
from salad.storage.atomic import atomic_path, write_json, write_text


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
    artifact(name, "table", Path(reports).name)
    tables = Path(reports) / "tables"
    with atomic_path(tables / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)
    write_text(tables / f"{name}.md", (f"{caption}\n\n" if caption else "") + markdown_table(df))
    from IPython.display import Markdown

    show_in_notebook(Markdown(f"**Table `{name}`**" + (f": {caption}" if caption else "")), df)


def show_in_notebook(*shown) -> None:
    """Display `shown` in the notebook that runs this, and nothing outside one: the executed notebooks then hold
    every table and figure their stage wrote. (IPython comes with the pinned ipykernel.)"""
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is not None:
        display(*shown)


def save_figure(fig, name: str, reports: str | Path) -> None:
    artifact(name, "figure", Path(reports).name)
    figures = Path(reports) / "figures"
    import matplotlib

    # Same figure, same bytes: an svg otherwise carries its creation date and clip-path ids salted per process.
    with matplotlib.rc_context({"svg.hashsalt": name}):
        for ext in ("png", "svg"):
            with atomic_path(figures / f"{name}.{ext}") as tmp:
                fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight",
                            metadata={"Date": None} if ext == "svg" else None)
    import matplotlib.pyplot as plt
    from IPython.display import Image

    plt.close(fig)
    show_in_notebook(Image(filename=str(figures / f"{name}.png")))  # the very bytes of the file, whatever the backend


def save_metrics(values: dict[str, float], reports: str | Path) -> None:
    """The notebook's headline numbers, for `dvc metrics show` and `dvc exp show`."""
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in values.items()}
    write_json(Path(reports) / "metrics.json", clean)
