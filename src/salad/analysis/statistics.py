"""The statistics of the paper's analysis (docs/design.md §8), written out with numpy and scipy.

Ordinary least squares (Fig 3, Table 1, Appendix A.6)
    y = Xβ + ε with an intercept column prepended by default. Coefficients come from the QR factorisation X = QR,
    β̂ = R⁻¹Qᵀy, so an ill-conditioned design loses no precision to forming XᵀX. With residuals e = y − Xβ̂,
    SSE = eᵀe, df = n − p, σ̂² = SSE/df and Cov(β̂) = σ̂²(XᵀX)⁻¹ = σ̂² R⁻¹R⁻ᵀ.
    R² = 1 − SSE/SST with SST centred when the model has a constant; adjusted R² = 1 − (n − k₀)/df · (1 − R²),
    k₀ = 1 with a constant, else 0 (the conventions of statsmodels).
    Figure 3's band is the confidence interval for the MEAN at x₀: x₀ᵀβ̂ ± t_{df, 1−a/2} · sqrt(σ̂² x₀ᵀ(XᵀX)⁻¹x₀),
    not the wider prediction interval for a new observation.

Leave-one-out cross-validated R² (Fig 3 panels, Table 1)
    R²_cv = 1 − PRESS/SST with PRESS = Σᵢ (eᵢ / (1 − hᵢᵢ))², hᵢᵢ the diagonal of the hat matrix H = X(XᵀX)⁻¹Xᵀ = QQᵀ.
    For OLS this is exactly the sum of squared errors of n refits that each leave one point out and predict it.
    Unlike in-sample R², R²_cv can be negative.

Partial R² (Table 1, Table 7)
    partial R² of a set of columns = (SSE_reduced − SSE_full)/SSE_reduced, the share of the variance left by the other
    predictors that the columns explain. In a type-II ANCOVA this is SS_term/(SS_term + SS_resid).
    The partial LOOCV R² of Appendix A.6 is R²_cv(full) − R²_cv(controls); it can be negative.
    Note: Table 1 prints a "partial R²" of −0.001 and its univariate misalignment R² (0.750) equals the LOOCV R²
    quoted in §3.5, so Table 1 appears to report the cross-validated variants; both are provided here.

Type-II ANCOVA (Table 7)
    α enters as a categorical fixed effect (treatment dummies; the sums of squares do not depend on the coding) and
    the covariates (log misalignment or forgetting, log tokens) linearly, without interactions. Without interactions,
    type II reduces to: SS_term = SSE(model without the term) − SSE(full model), df_term = its number of columns,
    F = (SS_term/df_term)/(SSE_full/df_resid), p = P(F_{df_term, df_resid} > F) — what
    `statsmodels.stats.anova.anova_lm(fit, typ=2)` reports for such a model.

Scaling law of misalignment (Table 2)
    M = E + B·D^(−β), E ≥ 0, B > 0, β > 0, fitted by least squares. For fixed β the model is linear in (E, B), so
    the fit profiles β out (variable projection): a deterministic log-spaced grid over β, non-negative least squares
    for (E, B) at each β, then a bounded scalar refinement of β around the best grid point. D is rescaled by its
    geometric mean inside the fit, because B itself spans 10 orders of magnitude in the paper (45.1 to 3.2e10).
    LOOCV R² refits the law without each point and predicts it. Tokens to within a fraction f of E solve
    B·D^(−β) = f·E: D = (B/(f·E))^(1/β).

Per-category significance (Fig 7)
    The paper only says "We highlight the categories with statistically significant improvements" (caption of
    Figure 7) and names no test. Stage I and Stage II answer the same items, so the comparison is paired: per
    category, the exact McNemar test — under H0 the discordant items (right only after, right only before) are
    Binomial(n_discordant, 1/2) — then a correction over the categories (Holm by default: the figure makes one claim
    per category, so the family-wise error is the natural guarantee; Benjamini–Hochberg on request).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats


# ---------------------------------------------------------------------------------------------------------------
# Ordinary least squares
# ---------------------------------------------------------------------------------------------------------------

def _as_vector(y, name: str = "y") -> np.ndarray:
    v = np.asarray(y, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError(f"{name} has non-finite values at rows {bad[:10].tolist()}")
    return v


def _as_matrix(X, n: int, name: str = "X") -> np.ndarray:
    m = np.asarray(X, dtype=float)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2:
        raise ValueError(f"{name} must be one- or two-dimensional, got shape {m.shape}")
    if m.shape[0] != n:
        raise ValueError(f"{name} has {m.shape[0]} rows but y has {n}")
    bad = np.argwhere(~np.isfinite(m))
    if bad.size:
        raise ValueError(f"{name} has non-finite values at (row, column) {[tuple(b) for b in bad[:10].tolist()]}")
    return m


def _design(X, n: int, add_intercept: bool) -> np.ndarray:
    m = _as_matrix(X, n)
    return np.column_stack([np.ones(n), m]) if add_intercept else m


def _has_constant(X: np.ndarray) -> bool:
    """Whether some column is a non-zero constant (statsmodels' rule for a centred R²)."""
    if X.shape[0] == 0:
        return False
    return bool(np.any(np.all(X == X[0], axis=0) & (X[0] != 0)))


def _qr(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, p = X.shape
    if p == 0:
        raise ValueError("the design has no columns")
    if n <= p:
        raise ValueError(f"{n} observations cannot fit {p} coefficients with residual degrees of freedom left")
    q, r = np.linalg.qr(X)
    diag = np.abs(np.diag(r))
    # Rank test relative to the largest pivot: a collinear design would give arbitrary coefficients.
    if diag.min() <= max(n, p) * np.finfo(float).eps * diag.max():
        raise ValueError(f"the design matrix ({n}×{p}) is rank-deficient: some columns are collinear")
    return q, r


@dataclass(frozen=True)
class MeanPrediction:
    """Fitted mean at new points and its confidence band (Figure 3's shaded band)."""

    mean: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


@dataclass(frozen=True)
class OLSResult:
    """An ordinary least-squares fit. `coef[0]` is the intercept when `add_intercept` was set."""

    coef: np.ndarray
    se: np.ndarray
    r2: float
    adj_r2: float
    ssr: float              # residual sum of squares, SSE
    df_resid: int
    df_model: int
    n: int
    sigma2: float           # SSE / df_resid
    cov_unscaled: np.ndarray  # (XᵀX)⁻¹
    residuals: np.ndarray
    hat: np.ndarray         # diagonal of the hat matrix
    add_intercept: bool

    @property
    def cov(self) -> np.ndarray:
        """Cov(β̂) = σ̂²(XᵀX)⁻¹."""
        return self.sigma2 * self.cov_unscaled

    @property
    def tvalues(self) -> np.ndarray:
        return self.coef / self.se

    @property
    def pvalues(self) -> np.ndarray:
        """Two-sided p-values of H0: coefficient = 0, from the t distribution with df_resid."""
        return 2.0 * stats.t.sf(np.abs(self.tvalues), self.df_resid)

    def predict_mean(self, X_new, level: float = 0.95) -> MeanPrediction:
        """x₀ᵀβ̂ ± t_{df, (1+level)/2} · sqrt(σ̂² x₀ᵀ(XᵀX)⁻¹x₀) for each row x₀ of X_new.

        X_new has the columns of the X given to `ols` (without the intercept, which is added here when the fit had it).
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        p_given = len(self.coef) - int(self.add_intercept)
        m = np.asarray(X_new, dtype=float)
        if m.ndim <= 1:
            # A 1-d input is a list of points when the model has one predictor, else a single point.
            m = m.reshape(-1, 1) if p_given == 1 else m.reshape(1, -1)
        if m.shape[1] != p_given:
            raise ValueError(f"X_new has {m.shape[1]} columns, the fit has {p_given} predictors")
        Z = np.column_stack([np.ones(len(m)), m]) if self.add_intercept else m
        mean = Z @ self.coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", Z, self.cov, Z))
        half = stats.t.ppf(0.5 + level / 2.0, self.df_resid) * se
        return MeanPrediction(mean=mean, se=se, lower=mean - half, upper=mean + half, level=level)


def ols(y, X, add_intercept: bool = True) -> OLSResult:
    """Least-squares fit of y = Xβ + ε (module docstring for the formulas).

    y: n values; X: n×p predictors (or n values for one predictor); an intercept column is prepended when
    `add_intercept`. Raises ValueError for non-finite data, a rank-deficient design or no residual degrees of freedom.
    """
    yv = _as_vector(y)
    Xd = _design(X, len(yv), add_intercept)
    q, r = _qr(Xd)
    coef = np.linalg.solve(r, q.T @ yv)
    resid = yv - Xd @ coef
    n, p = Xd.shape
    df_resid = n - p
    ssr = float(resid @ resid)
    sigma2 = ssr / df_resid
    r_inv = np.linalg.solve(r, np.eye(p))
    cov_unscaled = r_inv @ r_inv.T
    k0 = int(add_intercept or _has_constant(Xd))
    sst = float(((yv - yv.mean()) ** 2).sum()) if k0 else float(yv @ yv)
    r2 = 1.0 - ssr / sst if sst > 0 else float("nan")
    adj_r2 = 1.0 - (n - k0) / df_resid * (1.0 - r2)
    return OLSResult(
        coef=coef, se=np.sqrt(sigma2 * np.diag(cov_unscaled)), r2=r2, adj_r2=adj_r2, ssr=ssr, df_resid=df_resid,
        df_model=p - k0, n=n, sigma2=sigma2, cov_unscaled=cov_unscaled, residuals=resid,
        hat=(q ** 2).sum(axis=1), add_intercept=add_intercept)


def _sst(y: np.ndarray) -> float:
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= 0:
        raise ValueError("y is constant: R² is undefined")
    return sst


def press(y, X, add_intercept: bool = True) -> float:
    """PRESS = Σᵢ (eᵢ/(1 − hᵢᵢ))², the squared error of leave-one-out predictions, from a single fit."""
    fit = ols(y, X, add_intercept)
    if np.any(fit.hat >= 1.0 - 1e-10):
        rows = np.flatnonzero(fit.hat >= 1.0 - 1e-10).tolist()
        raise ValueError(f"rows {rows} have leverage 1: leaving them out makes the model unidentified")
    return float(((fit.residuals / (1.0 - fit.hat)) ** 2).sum())


def loocv_r2(y, X, add_intercept: bool = True) -> float:
    """Leave-one-out cross-validated R² = 1 − PRESS/SST, SST = Σ(yᵢ − ȳ)².

    PRESS comes from the hat matrix of one fit; it equals the squared error of n refits that each leave one point
    out and predict it (an identity of least squares, checked in the tests).
    """
    yv = _as_vector(y)
    return 1.0 - press(yv, X, add_intercept) / _sst(yv)


def univariate_r2(y, x) -> float:
    """In-sample R² of y on a single predictor x with an intercept (= squared Pearson correlation)."""
    xv = _as_vector(x, "x")
    return ols(y, xv).r2


def _split_columns(X, n: int, columns_of_interest) -> tuple[np.ndarray, np.ndarray]:
    m = _as_matrix(X, n, "X_full")
    cols = np.atleast_1d(np.asarray(columns_of_interest, dtype=int))
    if cols.size == 0:
        raise ValueError("columns_of_interest is empty")
    if np.any((cols < 0) | (cols >= m.shape[1])) or len(set(cols.tolist())) != cols.size:
        raise ValueError(f"columns_of_interest {cols.tolist()} must be distinct indices into {m.shape[1]} columns")
    keep = np.setdiff1d(np.arange(m.shape[1]), cols)
    return m, m[:, keep]


def partial_r2(y, X_full, columns_of_interest, add_intercept: bool = True) -> float:
    """(SSE_reduced − SSE_full)/SSE_reduced, the reduced model dropping `columns_of_interest` (indices of X_full).

    The reduced model keeps the intercept (when `add_intercept`), so dropping every column leaves the mean model.
    """
    yv = _as_vector(y)
    full, reduced = _split_columns(X_full, len(yv), columns_of_interest)
    sse_full = ols(yv, full, add_intercept).ssr
    sse_reduced = _reduced_sse(yv, reduced, add_intercept)
    if sse_reduced <= 0:
        raise ValueError("the reduced model fits y exactly: partial R² is undefined")
    return (sse_reduced - sse_full) / sse_reduced


def _reduced_sse(y: np.ndarray, reduced: np.ndarray, add_intercept: bool) -> float:
    if reduced.shape[1] == 0:
        if not add_intercept:
            return float(y @ y)
        return float(((y - y.mean()) ** 2).sum())
    return ols(y, reduced, add_intercept).ssr


def partial_loocv_r2(y, X_full, columns_of_interest, add_intercept: bool = True) -> float:
    """R²_cv(full) − R²_cv(controls): the out-of-sample variance explained by the columns beyond the controls.

    Controls = X_full without `columns_of_interest`. With no controls left the reduced model is the mean, whose
    leave-one-out R² is 1 − (n/(n−1))² (the mean of the other n−1 points predicts each one).
    """
    yv = _as_vector(y)
    full, reduced = _split_columns(X_full, len(yv), columns_of_interest)
    sst = _sst(yv)
    cv_full = 1.0 - press(yv, full, add_intercept) / sst
    if reduced.shape[1] == 0:
        if not add_intercept:
            raise ValueError("no controls and no intercept: the reduced model is empty")
        n = len(yv)
        cv_reduced = 1.0 - (n / (n - 1)) ** 2
    else:
        cv_reduced = 1.0 - press(yv, reduced, add_intercept) / sst
    return cv_full - cv_reduced


# ---------------------------------------------------------------------------------------------------------------
# Type-II ANCOVA
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FixedEffectsDesign:
    """Predictors of an ANCOVA without intercept, and which columns belong to which term."""

    X: np.ndarray
    terms: dict[str, list[int]]
    levels: list
    y: np.ndarray


def _column(data, name: str) -> np.ndarray:
    try:
        values = data[name]
    except (KeyError, IndexError, ValueError):
        available = list(data.columns) if isinstance(data, pd.DataFrame) else list(data)
        raise ValueError(f"column {name!r} not found; available: {available}") from None
    return np.asarray(values)


def fixed_effects_design(data: pd.DataFrame | Mapping[str, Sequence], response: str, factor: str,
                         covariate: str | Sequence[str]) -> FixedEffectsDesign:
    """Treatment-coded dummies of `factor` (first of the sorted levels is the reference) and the covariates.

    The columns exclude the intercept (`ols` adds it); `terms` maps the factor's name and each covariate's name to
    its column indices, for `partial_r2` and `partial_loocv_r2`.
    """
    covariates = [covariate] if isinstance(covariate, str) else list(covariate)
    if not covariates:
        raise ValueError("at least one covariate is needed")
    names = [response, factor, *covariates]
    if len(set(names)) != len(names):
        raise ValueError(f"response, factor and covariates must be distinct columns, got {names}")
    y = _column(data, response).astype(float)
    f = _column(data, factor)
    n = len(y)
    cov_cols = []
    for name in covariates:
        c = _column(data, name).astype(float)
        if len(c) != n:
            raise ValueError(f"column {name!r} has {len(c)} rows, {response!r} has {n}")
        cov_cols.append(c)
    if len(f) != n:
        raise ValueError(f"column {factor!r} has {len(f)} rows, {response!r} has {n}")
    for name, c in [(response, y)] + list(zip(covariates, cov_cols)):
        bad = np.flatnonzero(~np.isfinite(c))
        if bad.size:
            raise ValueError(f"column {name!r} has non-finite values at rows {bad[:10].tolist()}")
    if pd.isna(pd.Series(f)).any():
        rows = np.flatnonzero(pd.isna(pd.Series(f)).to_numpy())[:10].tolist()
        raise ValueError(f"column {factor!r} has missing values at rows {rows}")
    levels = sorted(set(f.tolist()))
    if len(levels) < 2:
        raise ValueError(f"factor {factor!r} has {len(levels)} level(s); a fixed effect needs at least 2")
    dummies = np.column_stack([(f == lev).astype(float) for lev in levels[1:]])
    X = np.column_stack([dummies, *cov_cols])
    k = len(levels) - 1
    terms = {factor: list(range(k))}
    for j, name in enumerate(covariates):
        terms[name] = [k + j]
    return FixedEffectsDesign(X=X, terms=terms, levels=levels, y=y)


def ancova_type2(data: pd.DataFrame | Mapping[str, Sequence], response: str, factor: str,
                 covariate: str | Sequence[str]) -> pd.DataFrame:
    """Type-II ANCOVA of `response` on a categorical `factor` and one or more linear covariates, no interactions.

    For each term: SS = SSE(full without the term) − SSE(full), df = its number of columns, MS = SS/df,
    F = MS/(SSE_full/df_resid), p = F-distribution upper tail, partial_R2 = SS/(SS + SSE_full).
    Rows: the factor, then the covariates in the given order, then "Residual" (SS = SSE_full, F and p NaN).
    Table 7 is `ancova_type2(runs, "speech_acc", "alpha", ["log_misalignment", "log_tokens"])`.
    """
    design = fixed_effects_design(data, response, factor, covariate)
    full = ols(design.y, design.X)
    if full.ssr <= 0:
        raise ValueError("the full model fits the response exactly: F statistics are undefined")
    mse = full.ssr / full.df_resid
    rows = {}
    for term, cols in design.terms.items():
        keep = np.setdiff1d(np.arange(design.X.shape[1]), cols)
        ss = _reduced_sse(design.y, design.X[:, keep], True) - full.ssr
        df = len(cols)
        F = (ss / df) / mse
        rows[term] = {"df": float(df), "SS": ss, "MS": ss / df, "F": F, "p": float(stats.f.sf(F, df, full.df_resid)),
                      "partial_R2": ss / (ss + full.ssr)}
    rows["Residual"] = {"df": float(full.df_resid), "SS": full.ssr, "MS": mse, "F": math.nan, "p": math.nan,
                        "partial_R2": math.nan}
    return pd.DataFrame.from_dict(rows, orient="index")[["df", "SS", "MS", "F", "p", "partial_R2"]]


# ---------------------------------------------------------------------------------------------------------------
# Scaling law M = E + B·D^(−β)
# ---------------------------------------------------------------------------------------------------------------

class ScalingLawError(ValueError):
    """The points do not determine a decreasing law E + B·D^(−β) with E ≥ 0, B > 0, β > 0."""


# β search range: below 1e-3 the power is indistinguishable from a constant over any token range, above 10 it is a
# step. An optimum on either bound means the points do not identify β.
BETA_MIN, BETA_MAX = 1e-3, 10.0
_BETA_GRID = np.geomspace(BETA_MIN, BETA_MAX, 601)


@dataclass(frozen=True)
class ScalingLawFit:
    """M = E + B·D^(−β) fitted to n points; `loocv_r2` refits without each point and predicts it."""

    E: float
    B: float
    beta: float
    loocv_r2: float
    r2: float
    sse: float
    n: int

    def predict(self, D) -> np.ndarray:
        return self.E + self.B * np.asarray(D, dtype=float) ** (-self.beta)

    def tokens_to_within(self, frac: float = 0.05) -> float:
        """D at which B·D^(−β) = frac·E, i.e. D = (B/(frac·E))^(1/β); infinite when E = 0."""
        if not frac > 0:
            raise ValueError(f"frac must be positive, got {frac}")
        if self.E <= 0:
            return math.inf
        # In logs: B reaches 1e10 in the paper, and (B/(fE))^(1/β) would overflow for small β.
        return math.exp((math.log(self.B) - math.log(frac * self.E)) / self.beta)


def _profile(beta: float, x: np.ndarray, m: np.ndarray) -> tuple[float, float, float]:
    """Best (E ≥ 0, B ≥ 0) for fixed β on rescaled tokens x, and the SSE."""
    A = np.column_stack([np.ones_like(x), x ** (-beta)])
    coef, rnorm = optimize.nnls(A, m)
    return float(coef[0]), float(coef[1]), float(rnorm ** 2)


def _fit_law(D: np.ndarray, M: np.ndarray) -> tuple[float, float, float, float]:
    """Constrained least squares (E, B, β, SSE); may return a boundary optimum (B = 0 or β on a bound)."""
    scale = math.exp(float(np.mean(np.log(D))))
    x = D / scale
    sse = np.array([_profile(b, x, M)[2] for b in _BETA_GRID])
    i = int(np.argmin(sse))  # first minimum: deterministic on ties
    lo, hi = _BETA_GRID[max(i - 1, 0)], _BETA_GRID[min(i + 1, len(_BETA_GRID) - 1)]
    beta = float(_BETA_GRID[i])
    if hi > lo:
        res = optimize.minimize_scalar(lambda b: _profile(b, x, M)[2], bounds=(lo, hi), method="bounded",
                                       options={"xatol": 1e-10 * hi})
        if res.fun <= sse[i]:
            beta = float(res.x)
    E, b_scaled, err = _profile(beta, x, M)
    # Undo the rescaling: B·D^(−β) = b_scaled·(D/scale)^(−β).
    return E, b_scaled * scale ** beta, beta, err


def fit_scaling_law(D, M) -> ScalingLawFit:
    """Fit M = E + B·D^(−β) by least squares with E ≥ 0, B > 0, β in [1e-3, 10] (module docstring for the method).

    D: training tokens (positive), M: misalignment at each budget; at least 4 points at 3 or more distinct budgets
    (3 parameters, and LOOCV refits on n − 1 points). Raises ScalingLawError when the best fit has B = 0
    (misalignment does not decrease with D) or β on a bound of its range (the points do not identify β).
    LOOCV refits keep boundary optima: they still give a least-squares prediction for the held-out point.
    """
    Dv = _as_vector(D, "D")
    Mv = _as_vector(M, "M")
    if len(Dv) != len(Mv):
        raise ValueError(f"D has {len(Dv)} values, M has {len(Mv)}")
    if np.any(Dv <= 0):
        raise ValueError(f"token counts must be positive, got {Dv[Dv <= 0][:5].tolist()}")
    n = len(Dv)
    if n < 4:
        raise ScalingLawError(f"{n} points: a 3-parameter law with leave-one-out refits needs at least 4")
    if len(np.unique(Dv)) < 3:
        raise ScalingLawError(f"only {len(np.unique(Dv))} distinct budgets: E, B and β are not identified")
    E, B, beta, err = _fit_law(Dv, Mv)
    if B <= 0:
        raise ScalingLawError("the best fit has B = 0: misalignment does not decrease with training tokens")
    if beta <= BETA_MIN * (1 + 1e-6) or beta >= BETA_MAX * (1 - 1e-6):
        raise ScalingLawError(f"the best β = {beta:.4g} is on the bound of [{BETA_MIN}, {BETA_MAX}]: "
                              "the points do not identify the exponent")
    sst = float(((Mv - Mv.mean()) ** 2).sum())
    if sst <= 0:
        raise ScalingLawError("misalignment is constant across budgets")
    loo = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        Ei, Bi, bi, _ = _fit_law(Dv[keep], Mv[keep])
        loo[i] = Ei + Bi * Dv[i] ** (-bi)
    return ScalingLawFit(E=E, B=B, beta=beta, loocv_r2=1.0 - float(((Mv - loo) ** 2).sum()) / sst,
                         r2=1.0 - err / sst, sse=err, n=n)


# ---------------------------------------------------------------------------------------------------------------
# Per-category paired significance (Figure 7)
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test of two models on the same items."""

    n_items: int
    gained: int     # items only the second model answers correctly
    lost: int       # items only the first model answers correctly
    pvalue: float

    @property
    def n_discordant(self) -> int:
        return self.gained + self.lost


def _as_correct(v, name: str) -> np.ndarray:
    a = np.asarray(v)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.dtype != bool:
        ok = np.isin(a, [0, 1])
        if not ok.all():
            raise ValueError(f"{name} must hold 0/1 or booleans; rows {np.flatnonzero(~ok)[:10].tolist()} do not")
        a = a.astype(bool)
    return a


def mcnemar_exact(correct_before, correct_after, alternative: str = "two-sided") -> McNemarResult:
    """Exact McNemar test: gained ~ Binomial(gained + lost, 1/2) under H0 (equal accuracy), via scipy's binomtest.

    `alternative="greater"` tests whether the second model is better. No discordant items gives p = 1.
    """
    a = _as_correct(correct_before, "correct_before")
    b = _as_correct(correct_after, "correct_after")
    if len(a) != len(b):
        raise ValueError(f"the two models answered different numbers of items ({len(a)} vs {len(b)})")
    gained = int(np.sum(~a & b))
    lost = int(np.sum(a & ~b))
    if gained + lost == 0:
        p = 1.0
    else:
        p = float(stats.binomtest(gained, gained + lost, 0.5, alternative=alternative).pvalue)
    return McNemarResult(n_items=len(a), gained=gained, lost=lost, pvalue=p)


def adjust_pvalues(pvalues, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values.

    holm: sort ascending p₍₁₎ ≤ … ≤ p₍ₘ₎, adjusted p₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎) (family-wise error).
    bh:   adjusted p₍ᵢ₎ = min_{j ≥ i} min(1, m·p₍ⱼ₎/j) (Benjamini–Hochberg false discovery rate).
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p-values must be one-dimensional, got shape {p.shape}")
    if np.any(~np.isfinite(p) | (p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    elif method == "bh":
        adj = np.minimum.accumulate(np.minimum(1.0, m * ranked / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}; use 'holm' or 'bh'")
    out = np.empty(m)
    out[order] = adj
    return out


def per_category_significance(category, correct_before, correct_after, method: str = "holm",
                              alpha: float = 0.05, alternative: str = "two-sided") -> pd.DataFrame:
    """Figure 7: per category, accuracy before/after, gain (percentage points), exact McNemar p, adjusted p.

    category, correct_before, correct_after: one entry per item; both models must have answered the same items in
    the same order. `significant` = adjusted p < alpha; `improved` = significant with a positive gain (what the
    figure highlights; a two-sided test can also flag a significant loss). Rows are sorted by category name.
    """
    cats = np.asarray(category)
    a = _as_correct(correct_before, "correct_before")
    b = _as_correct(correct_after, "correct_after")
    if not len(cats) == len(a) == len(b):
        raise ValueError(f"lengths differ: category {len(cats)}, before {len(a)}, after {len(b)}")
    rows = []
    for c in sorted(set(cats.tolist())):
        sel = cats == c
        t = mcnemar_exact(a[sel], b[sel], alternative)
        acc_a, acc_b = 100.0 * a[sel].mean(), 100.0 * b[sel].mean()
        rows.append({"category": c, "n": t.n_items, "acc_before": acc_a, "acc_after": acc_b, "gain": acc_b - acc_a,
                     "gained": t.gained, "lost": t.lost, "p": t.pvalue})
    table = pd.DataFrame(rows)
    table["p_adjusted"] = adjust_pvalues(table["p"].to_numpy(), method)
    table["significant"] = table["p_adjusted"] < alpha
    table["improved"] = table["significant"] & (table["gain"] > 0)
    return table
