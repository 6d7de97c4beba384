"""The least-squares analysis of the analysis grid (paper Section 3.5 and Appendix A.6; docs/design.md §8): Figure 3,
Table 1, Table 7 and Table 2, each with the paper's published numbers beside ours.

Input: the frame of `salad.analysis.results.grid_results` (one row per grid model: data, alpha, budget, positions, M,
M_se, F, speech_accuracy, text_accuracy). Everything here is a pure function of that frame; the statistics themselves
are `salad.analysis.statistics` (formulas in its docstring) and are not re-derived here.

What the paper does, and what is fixed here where it leaves a choice:

- Sample. Figure 3, Table 1 and Table 7 use "models trained on narrow-domain speech data (LibriHeavy + Emilia)":
  every α ∈ {0, .25, .5, .75, 1} at every budget (Table 7's residual df 23 = 30 models − 7 coefficients, i.e.
  5 α × 6 budgets). The grid's narrow side is `data == "speech"` (D_speech), so that is the default sample; the
  broad side (`"broad"`, the paper's FineWeb-Edu) is only drawn for context in the figure.
- Units. Accuracies are the paper's average benchmark accuracy in percent: `grid_results` gives fractions (the mean
  over tasks of the best-format headline accuracy), multiplied by 100 here so that slopes and Table 7's sums of
  squares are in the paper's units (percentage points, squared). M and F are in nats per token as measured.
- Predictors. Speech accuracy is regressed on log M (natural log) and text accuracy on F itself, as Figure 3's axes
  are. Table 1's "Misalignment" and "Forgetting" rows use the same transforms for both responses (log M, F).
- Tokens. The paper's training budget D (tokens) is the number of positions a grid model was trained on
  (`positions`), so log(tokens) is log(positions) and Table 2's D, B and Tokens@5%E are in positions. The paper's
  D is in tokens of a 3B model trained on 2B–12B of them, so B and Tokens@5%E are not comparable in magnitude.
- Table 1's cells. Its univariate values for misalignment/speech (0.750) and forgetting/text (0.744) equal the LOOCV
  R² quoted for Figure 3, and a partial value of −0.001 is impossible in sample: Table 1 appears to print the
  cross-validated variants (data/paper/README.md). We report both the in-sample and the LOOCV values; the paper's
  cell sits beside them as `paper_table1`. "X given Y" (printed "X | Y") is X's contribution given Y (the
  conditioning bar is lost in the extraction; the order is read from §3.5).
- Table 2. The paper fits runs with α > 0 (NLL runs do not decrease in M with scale); that is the default here too.
  A fit that `fit_scaling_law` refuses (too few points, B = 0, β on its bound) is a row of NaN with the reason in
  `status`: the miniature grid has len(grid.budgets) + 1 models per cell (4 by default), the bare minimum for a
  3-parameter law with leave-one-out refits, where each refit on 3 points interpolates them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from salad.analysis.published import published_value
from salad.analysis.statistics import (
    ScalingLawError,
    ancova_type2,
    fit_scaling_law,
    fixed_effects_design,
    loocv_r2,
    ols,
    partial_loocv_r2,
    partial_r2,
)

__all__ = ["NARROW", "DATA_LABELS", "prepare", "table1", "table7", "table2", "figure3_fits", "ols_band",
           "or_reason"]

NARROW = "speech"
"""The grid's narrow data side, standing for the paper's LibriHeavy + Emilia (the sample of Fig 3, Tables 1 and 7)."""

DATA_LABELS = {"speech": "LibriHeavy + Emilia", "broad": "FineWeb-Edu"}
"""The paper's name of the data set each grid side stands for (Table 2's row blocks)."""

_REQUIRED = ("data", "alpha", "positions", "M", "F", "speech_accuracy", "text_accuracy")

# Table 1: row label → the predictors (focal first) on our prepared columns.
_PREDICTORS = {"Misalignment": "log_M", "Forgetting": "F"}
_RESPONSES = {"speech": ("speech_pct", "Speech perf. R²"), "text": ("text_pct", "Text perf. R²")}
_FIG3 = {"speech": ("log_M", "Speech perf. vs log(misalignment)"), "text": ("F", "Text perf. vs forgetting")}


def _paper(table: str, row: str, column: str) -> float:
    value = published_value(table, row, column)
    return math.nan if value is None else float(value)


def prepare(grid: pd.DataFrame, data: str | None = NARROW) -> pd.DataFrame:
    """The rows of one data side (all rows when `data` is None) with the analysis columns added:
    speech_pct, text_pct (accuracies × 100), log_M = ln M, log_positions = ln positions.

    Raises ValueError for missing columns, an empty selection, or M / positions that are not positive (their
    logarithms are the predictors).
    """
    missing = [c for c in _REQUIRED if c not in grid.columns]
    if missing:
        raise ValueError(f"grid frame lacks columns {missing}; has {list(grid.columns)}")
    frame = grid if data is None else grid[grid["data"] == data]
    if frame.empty:
        sides = sorted(set(grid["data"]))
        raise ValueError(f"no grid models with data == {data!r}; the frame has {sides}")
    for col in ("M", "positions"):
        bad = frame[~(frame[col] > 0)]
        if len(bad):
            raise ValueError(f"{col} must be positive to take its log; rows {bad.index[:10].tolist()} are not")
    out = frame.reset_index(drop=True).copy()
    out["speech_pct"] = 100.0 * out["speech_accuracy"].astype(float)
    out["text_pct"] = 100.0 * out["text_accuracy"].astype(float)
    out["log_M"] = np.log(out["M"].astype(float))
    out["log_positions"] = np.log(out["positions"].astype(float))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Figure 3 / Table 1
# ---------------------------------------------------------------------------------------------------------------

def ols_band(x, y, level: float = 0.95, points: int = 100) -> pd.DataFrame:
    """Figure 3's line and band: the OLS fit of y on x evaluated on `points` evenly spaced x over the data's range,
    with the confidence interval of the MEAN prediction at `level` (not the prediction interval), columns
    x, mean, lower, upper."""
    xv = np.asarray(x, dtype=float)
    fit = ols(y, xv)
    grid = np.linspace(xv.min(), xv.max(), points)
    pred = fit.predict_mean(grid, level=level)
    return pd.DataFrame({"x": grid, "mean": pred.mean, "lower": pred.lower, "upper": pred.upper})


def figure3_fits(grid: pd.DataFrame, data: str | None = NARROW, level: float = 0.95,
                 points: int = 100) -> dict[str, dict]:
    """The two panels of Figure 3 on the `data` side: "speech" (speech accuracy % on ln M) and "text" (text
    accuracy % on F). Each entry: x and y column names, the fitted `slope`, `intercept`, in-sample `r2`, `loocv_r2`
    (the number printed in each panel), `n`, and `band` (the `ols_band` frame)."""
    frame = prepare(grid, data)
    out = {}
    for side, (xcol, _) in _FIG3.items():
        ycol = _RESPONSES[side][0]
        if frame[ycol].nunique() < 2 or frame[xcol].nunique() < 2 or len(frame) < 3:
            out[side] = {"x": xcol, "y": ycol, "n": len(frame), "loocv_r2": math.nan, "r2": math.nan,
                         "slope": math.nan, "status": f"not estimable: {ycol} or {xcol} is constant, or n < 3"}
            continue
        fit = ols(frame[ycol], frame[xcol])
        out[side] = {"x": xcol, "y": ycol, "slope": float(fit.coef[1]), "intercept": float(fit.coef[0]),
                     "r2": fit.r2, "loocv_r2": loocv_r2(frame[ycol], frame[xcol]), "n": fit.n,
                     "band": ols_band(frame[xcol], frame[ycol], level=level, points=points), "status": "ok"}
    return out


def or_reason(table, grid: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """`table(grid, **kwargs)`, or, when the grid cannot support it (fewer models than coefficients, one α level,
    a constant response: the statistics raise ValueError), a one-row frame whose `status` gives the reason. A tiny
    profile (params/ci.yaml) still renders its report, with the reason printed where the numbers would be."""
    try:
        return table(grid, **kwargs)
    except ValueError as e:
        return pd.DataFrame([{"status": f"not estimable on this grid: {e}"}])


def table1(grid: pd.DataFrame, data: str | None = NARROW) -> pd.DataFrame:
    """Table 1 (with Figure 3's fits): univariate and partial R² of speech and text accuracy on misalignment
    (ln M) and forgetting (F), on the `data` side (the paper's narrow-domain models by default).

    One row per (response, predictor):
    - univariate rows ("Misalignment", "Forgetting"): OLS of accuracy (%) on the one predictor; `slope`,
      `slope_se`, `slope_p`, `intercept`, in-sample `R2` and `LOOCV_R2`;
    - partial rows ("Misalignment given Forgetting", the paper's "Misalignment | Forgetting", and the reverse;
      "given" keeps the markdown table intact): OLS on both
      predictors; `slope`/`slope_se`/`slope_p` are the focal predictor's coefficient in that joint fit,
      `intercept` the joint fit's; `R2` is the in-sample partial R² (SSE_other − SSE_both)/SSE_other and
      `LOOCV_R2` the partial LOOCV R² = R²_cv(both) − R²_cv(other).
    Paper columns: `paper_table1` (Table 1's printed cell, which appears to be the cross-validated value: compare
    with LOOCV_R2) and `paper_LOOCV_R2` (Figure 3's LOOCV R² quoted in §3.5, for the two panels' fits).
    """
    frame = prepare(grid, data)
    rows = []
    for response, (ycol, paper_col) in _RESPONSES.items():
        y = frame[ycol].to_numpy(float)
        for label, xcol in _PREDICTORS.items():
            fit = ols(y, frame[xcol].to_numpy(float))
            fig3 = _FIG3[response]
            rows.append({
                "response": response, "predictor": label, "kind": "univariate",
                "regressors": xcol, "n": fit.n,
                "slope": fit.coef[1], "slope_se": fit.se[1], "slope_p": fit.pvalues[1], "intercept": fit.coef[0],
                "R2": fit.r2, "LOOCV_R2": loocv_r2(y, frame[xcol].to_numpy(float)),
                "paper_table1": _paper("Table 1", label, paper_col),
                "paper_LOOCV_R2": _paper("Figure 3", fig3[1], "LOOCV R²") if fig3[0] == xcol else math.nan,
            })
        for focal, other in (("Misalignment", "Forgetting"), ("Forgetting", "Misalignment")):
            X = frame[[_PREDICTORS[focal], _PREDICTORS[other]]].to_numpy(float)
            fit = ols(y, X)
            label = f"{focal} given {other}"
            rows.append({
                "response": response, "predictor": label, "kind": "partial",
                "regressors": f"{_PREDICTORS[focal]} + {_PREDICTORS[other]}", "n": fit.n,
                "slope": fit.coef[1], "slope_se": fit.se[1], "slope_p": fit.pvalues[1], "intercept": fit.coef[0],
                "R2": partial_r2(y, X, [0]), "LOOCV_R2": partial_loocv_r2(y, X, [0]),
                "paper_table1": _paper("Table 1", f"{focal} | {other}", paper_col), "paper_LOOCV_R2": math.nan,
            })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Table 7 (type-II ANCOVA) and Appendix A.6's partial LOOCV R²
# ---------------------------------------------------------------------------------------------------------------

# side → (response, focal covariate column, the paper's label of the focal term, Appendix A.6's row)
_TABLE7 = {
    "speech": ("speech_pct", "log_M", "log(misalignment)", "log(misalignment) (speech perf.)", "Speech (%)"),
    "text": ("text_pct", "F", "forgetting", "forgetting (text perf.)", "Text (%)"),
}
_PAPER7 = {"df": "df", "SS": "SS", "MS": "MS", "F": "F", "p": "p", "partial_R2": "Partial R²"}


def table7(grid: pd.DataFrame, data: str | None = NARROW) -> pd.DataFrame:
    """Table 7 and Appendix A.6: type-II ANCOVA of speech accuracy (%) on ln M and of text accuracy (%) on F, each
    controlling for α as a categorical fixed effect and ln(positions) as a linear covariate, no interactions
    (the paper's y = β₀ + β₁·focal + γ_α + β_T·log(tokens) + ε), on the `data` side.

    Rows per side: the focal term, "α (FE)", "log(tokens)", "Residual" (the paper's order). Columns df, SS, MS, F,
    p, partial_R2 = SS/(SS + SS_resid) from `ancova_type2`, and partial_LOOCV_R2 = R²_cv(full) − R²_cv(full
    without the term) (the paper quotes it for the focal term only, ≈ 0.34 speech and ≈ 0.23 text); then the paper's
    cells as paper_<stat>. A side whose ANCOVA cannot be fitted (e.g. one α level, or fewer models than
    coefficients) raises ValueError: there is no honest partial answer.
    """
    frame = prepare(grid, data)
    tables = []
    for side, (ycol, focal, label, a6_row, prefix) in _TABLE7.items():
        anova = ancova_type2(frame, ycol, "alpha", [focal, "log_positions"])
        names = {focal: label, "alpha": "α (FE)", "log_positions": "log(tokens)", "Residual": "Residual"}
        anova = anova.rename(index=names).loc[[label, "α (FE)", "log(tokens)", "Residual"]]
        # Partial LOOCV R² of each term: the design's columns of that term against the rest.
        design = fixed_effects_design(frame, ycol, "alpha", [focal, "log_positions"])
        cv = {names[t]: partial_loocv_r2(design.y, design.X, cols) for t, cols in design.terms.items()}
        part = anova.reset_index(names="term")
        part.insert(0, "side", side)
        part["partial_LOOCV_R2"] = [cv.get(t, math.nan) for t in part["term"]]
        for stat, col in _PAPER7.items():
            part[f"paper_{stat}"] = [_paper("Table 7", f"{prefix}: {t}", col) for t in part["term"]]
        part["paper_partial_LOOCV_R2"] = [_paper("Appendix A.6", a6_row, "partial LOOCV R²") if t == label
                                          else math.nan for t in part["term"]]
        tables.append(part)
    return pd.concat(tables, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------------
# Table 2: scaling laws of misalignment
# ---------------------------------------------------------------------------------------------------------------

def _paper_row2(data: str, alpha: float) -> str:
    return f"{DATA_LABELS.get(data, data)}, α={alpha:.2f}"


def table2(grid: pd.DataFrame, alphas: Sequence[float] | None = None, frac: float = 0.05) -> pd.DataFrame:
    """Table 2: per data side and α, the law M = E + B·D^(−β) fitted over the cell's models (D = positions) with
    `fit_scaling_law` (E ≥ 0, B > 0, β profiled; least squares), its in-sample and LOOCV R², and D at which
    B·D^(−β) = frac·E (Tokens@5%E by default).

    `alphas`: the α levels to fit; None (default) means every α > 0, the paper's selection ("runs with α > 0").
    `dataset` is the paper's name of the side. Both data sides are fitted (the paper prints α > 0 for
    LibriHeavy + Emilia and α = 1 for FineWeb-Edu; the other rows have NaN paper columns). A fit that fails is
    reported, never raised: E, B, β, R² NaN and the reason in `status` ("ok" otherwise); a fit whose E lands on
    its bound 0 keeps its numbers, with Tokens@5%E infinite and the reason in `status`. `tokens_beyond_data` is
    True when Tokens@5%E exceeds the largest D fitted, i.e. it is an extrapolation of the law. Paper values:
    paper_E, paper_B, paper_beta, paper_LOOCV_R2 and paper_tokens_at_5pct_E_billion (in billions of the paper's
    tokens; not comparable in magnitude, see the module docstring).
    """
    frame = prepare(grid, data=None)
    rows = []
    for (data, alpha), cell in frame.groupby(["data", "alpha"], sort=True):
        if alphas is None:
            if not alpha > 0:
                continue
        elif not any(math.isclose(float(alpha), float(a)) for a in alphas):
            continue
        cell = cell.sort_values("positions")
        D, M = cell["positions"].to_numpy(float), cell["M"].to_numpy(float)
        row = {"data": data, "dataset": DATA_LABELS.get(data, data), "alpha": float(alpha), "n": len(cell),
               "D_min": D.min(), "D_max": D.max(),
               "E": math.nan, "B": math.nan, "beta": math.nan, "R2": math.nan, "LOOCV_R2": math.nan,
               "tokens_at_5pct_E": math.nan, "tokens_beyond_data": pd.NA, "status": "ok"}
        try:
            fit = fit_scaling_law(D, M)
        except ScalingLawError as e:
            row["status"] = f"no fit: {e}"
        else:
            tokens = fit.tokens_to_within(frac)
            row.update(E=fit.E, B=fit.B, beta=fit.beta, R2=fit.r2, LOOCV_R2=fit.loocv_r2,
                       tokens_at_5pct_E=tokens, tokens_beyond_data=bool(tokens > D.max()))
            if fit.E <= 0:
                row["status"] = "E = 0 on its bound: no irreducible misalignment, Tokens@5%E infinite"
        paper_row = _paper_row2(data, float(alpha))
        row.update(paper_E=_paper("Table 2", paper_row, "E"), paper_B=_paper("Table 2", paper_row, "B"),
                   paper_beta=_paper("Table 2", paper_row, "β"),
                   paper_LOOCV_R2=_paper("Table 2", paper_row, "R²_LOOCV"),
                   paper_tokens_at_5pct_E_billion=_paper("Table 2", paper_row, "Tokens@5%E"))
        rows.append(row)
    columns = ["data", "dataset", "alpha", "n", "D_min", "D_max", "E", "B", "beta", "R2", "LOOCV_R2",
               "tokens_at_5pct_E", "tokens_beyond_data", "status", "paper_E", "paper_B", "paper_beta", "paper_LOOCV_R2",
               "paper_tokens_at_5pct_E_billion"]
    return pd.DataFrame(rows, columns=columns)
