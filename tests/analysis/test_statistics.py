"""Every statistic of salad.analysis.statistics against statsmodels/scipy computed here, or against known parameters."""

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import optimize, stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from salad.analysis.statistics import (
    ScalingLawError,
    ScalingLawFit,
    adjust_pvalues,
    ancova_type2,
    fit_scaling_law,
    fixed_effects_design,
    loocv_r2,
    mcnemar_exact,
    ols,
    partial_loocv_r2,
    partial_r2,
    per_category_significance,
    univariate_r2,
)


@pytest.fixture
def regression():
    rng = np.random.default_rng(1)
    n = 30
    X = np.column_stack([rng.normal(size=n), rng.uniform(0, 3, size=n), rng.normal(size=n)])
    y = 1.5 + X @ np.array([0.8, -1.2, 0.3]) + rng.normal(scale=0.7, size=n)
    return y, X


@pytest.fixture
def runs():
    """Thirty runs as in Table 7: five α levels × six budgets, a focal covariate and log tokens."""
    rng = np.random.default_rng(2)
    alpha = np.repeat([0.0, 0.25, 0.5, 0.75, 1.0], 6)
    log_tokens = np.log(np.tile([2, 4, 6, 8, 10, 12], 5) * 1e9)
    log_m = -1.0 - alpha + 0.1 * (log_tokens - log_tokens.mean()) + rng.normal(scale=0.2, size=30)
    y = 50 - 3 * log_m + 2 * alpha + 1.5 * (log_tokens - 22) + rng.normal(scale=0.5, size=30)
    return pd.DataFrame({"y": y, "alpha": alpha, "log_tokens": log_tokens, "log_m": log_m})


# --- OLS -------------------------------------------------------------------------------------------------------

def test_ols_matches_statsmodels(regression):
    y, X = regression
    ours = ols(y, X)
    ref = sm.OLS(y, sm.add_constant(X)).fit()
    np.testing.assert_allclose(ours.coef, ref.params, rtol=1e-10)
    np.testing.assert_allclose(ours.se, ref.bse, rtol=1e-10)
    np.testing.assert_allclose(ours.pvalues, ref.pvalues, rtol=1e-8)
    assert ours.r2 == pytest.approx(ref.rsquared, rel=1e-12)
    assert ours.adj_r2 == pytest.approx(ref.rsquared_adj, rel=1e-12)
    assert ours.ssr == pytest.approx(ref.ssr, rel=1e-12)
    assert ours.df_resid == ref.df_resid and ours.df_model == ref.df_model


def test_ols_without_intercept_uses_uncentred_r2(regression):
    y, X = regression
    ours = ols(y, X, add_intercept=False)
    ref = sm.OLS(y, X).fit()
    np.testing.assert_allclose(ours.coef, ref.params, rtol=1e-10)
    np.testing.assert_allclose(ours.se, ref.bse, rtol=1e-10)
    assert ours.r2 == pytest.approx(ref.rsquared, rel=1e-12)
    assert ours.adj_r2 == pytest.approx(ref.rsquared_adj, rel=1e-12)
    # A constant column given explicitly is an intercept: R² is centred again, as in statsmodels.
    explicit = ols(y, sm.add_constant(X), add_intercept=False)
    assert explicit.r2 == pytest.approx(sm.OLS(y, sm.add_constant(X)).fit().rsquared, rel=1e-12)
    assert explicit.df_model == 3


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_mean_confidence_band_matches_summary_frame(regression, level):
    y, X = regression
    x = X[:, 1]
    grid = np.linspace(x.min() - 1, x.max() + 1, 17)
    band = ols(y, x).predict_mean(grid, level=level)
    frame = sm.OLS(y, sm.add_constant(x)).fit().get_prediction(sm.add_constant(grid)).summary_frame(alpha=1 - level)
    np.testing.assert_allclose(band.mean, frame["mean"], rtol=1e-10)
    np.testing.assert_allclose(band.se, frame["mean_se"], rtol=1e-10)
    np.testing.assert_allclose(band.lower, frame["mean_ci_lower"], rtol=1e-10)
    np.testing.assert_allclose(band.upper, frame["mean_ci_upper"], rtol=1e-10)
    # The band is for the mean (Figure 3), strictly inside the interval for a new observation.
    assert np.all(band.upper < frame["obs_ci_upper"])


def test_mean_band_with_several_predictors(regression):
    y, X = regression
    new = X[:5] + 0.3
    band = ols(y, X).predict_mean(new)
    frame = sm.OLS(y, sm.add_constant(X)).fit().get_prediction(sm.add_constant(new, has_constant="add")).summary_frame()
    np.testing.assert_allclose(band.lower, frame["mean_ci_lower"], rtol=1e-10)
    np.testing.assert_allclose(band.upper, frame["mean_ci_upper"], rtol=1e-10)
    with pytest.raises(ValueError, match="columns"):
        ols(y, X).predict_mean(new[:, :2])


def test_ols_rejects_collinear_and_bad_input(regression):
    y, X = regression
    with pytest.raises(ValueError, match="rank-deficient"):
        ols(y, np.column_stack([X, X[:, 0] * 2]))
    bad = y.copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match=r"rows \[4\]"):
        ols(bad, X)
    with pytest.raises(ValueError, match="rows"):
        ols(y[:-1], X)


# --- cross-validation and partial R² ----------------------------------------------------------------------------

def _loo_refits(y, X):
    Z = sm.add_constant(X)
    preds = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        beta = np.linalg.lstsq(Z[keep], y[keep], rcond=None)[0]
        preds[i] = Z[i] @ beta
    return 1 - ((y - preds) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def test_loocv_r2_from_hat_matrix_equals_n_refits(regression):
    y, X = regression
    assert loocv_r2(y, X) == pytest.approx(_loo_refits(y, X), rel=1e-10)
    assert loocv_r2(y, X[:, 1]) == pytest.approx(_loo_refits(y, X[:, 1]), rel=1e-10)
    ref = sm.OLS(y, sm.add_constant(X)).fit().get_influence().hat_matrix_diag
    np.testing.assert_allclose(ols(y, X).hat, ref, rtol=1e-10)
    # Out-of-sample R² is below the in-sample one.
    assert loocv_r2(y, X) < ols(y, X).r2


def test_loocv_r2_can_be_negative():
    rng = np.random.default_rng(3)
    y = rng.normal(size=12)
    X = rng.normal(size=(12, 4))
    assert loocv_r2(y, X) == pytest.approx(_loo_refits(y, X), rel=1e-10)
    assert loocv_r2(y, X) < 0


def test_univariate_r2_is_squared_correlation(regression):
    y, X = regression
    assert univariate_r2(y, X[:, 1]) == pytest.approx(stats.pearsonr(X[:, 1], y)[0] ** 2, rel=1e-10)


@pytest.mark.parametrize("cols", [[0], [1, 2], [0, 1, 2]])
def test_partial_r2_equals_nested_fits(regression, cols):
    y, X = regression
    full = sm.OLS(y, sm.add_constant(X)).fit().ssr
    rest = [j for j in range(3) if j not in cols]
    reduced = sm.OLS(y, sm.add_constant(X[:, rest]) if rest else np.ones((len(y), 1))).fit().ssr
    assert partial_r2(y, X, cols) == pytest.approx((reduced - full) / reduced, rel=1e-10)


def test_partial_loocv_r2_equals_difference_of_refits(regression):
    y, X = regression
    assert partial_loocv_r2(y, X, [1]) == pytest.approx(_loo_refits(y, X) - _loo_refits(y, X[:, [0, 2]]), rel=1e-10)
    # No controls left: the reduced model is the mean, predicted for each point from the other n − 1.
    mean_only = 1 - (len(y) / (len(y) - 1)) ** 2
    assert partial_loocv_r2(y, X, [0, 1, 2]) == pytest.approx(_loo_refits(y, X) - mean_only, rel=1e-10)
    with pytest.raises(ValueError, match="distinct indices"):
        partial_loocv_r2(y, X, [3])


# --- ANCOVA ----------------------------------------------------------------------------------------------------

def _check_against_anova_lm(ours, ref, mapping):
    for our_term, ref_term in mapping.items():
        assert ours.loc[our_term, "df"] == ref.loc[ref_term, "df"]
        assert ours.loc[our_term, "SS"] == pytest.approx(ref.loc[ref_term, "sum_sq"], rel=1e-9)
        if ref_term != "Residual":
            assert ours.loc[our_term, "F"] == pytest.approx(ref.loc[ref_term, "F"], rel=1e-9)
            assert ours.loc[our_term, "p"] == pytest.approx(ref.loc[ref_term, "PR(>F)"], rel=1e-7)
            ss, resid = ref.loc[ref_term, "sum_sq"], ref.loc["Residual", "sum_sq"]
            assert ours.loc[our_term, "partial_R2"] == pytest.approx(ss / (ss + resid), rel=1e-9)


def test_ancova_matches_anova_lm_type2(runs):
    ours = ancova_type2(runs, "y", "alpha", "log_tokens")
    ref = anova_lm(smf.ols("y ~ C(alpha) + log_tokens", runs).fit(), typ=2)
    _check_against_anova_lm(ours, ref, {"alpha": "C(alpha)", "log_tokens": "log_tokens", "Residual": "Residual"})
    assert list(ours.index) == ["alpha", "log_tokens", "Residual"]
    assert ours.loc["alpha", "MS"] == pytest.approx(ours.loc["alpha", "SS"] / 4)


def test_ancova_table7_design_matches_anova_lm(runs):
    """Table 7: focal covariate, α as fixed effect, log tokens; arrays in a dict work as well as a DataFrame."""
    data = {k: runs[k].to_numpy() for k in runs}
    ours = ancova_type2(data, "y", "alpha", ["log_m", "log_tokens"])
    ref = anova_lm(smf.ols("y ~ log_m + C(alpha) + log_tokens", runs).fit(), typ=2)
    _check_against_anova_lm(ours, ref, {"log_m": "log_m", "alpha": "C(alpha)", "log_tokens": "log_tokens",
                                        "Residual": "Residual"})
    assert ours.loc["Residual", "df"] == 23  # as in Table 7: 30 runs − 1 − 4 − 1 − 1


def test_ancova_partial_r2_agrees_with_nested_fit_and_loocv_uses_same_design(runs):
    design = fixed_effects_design(runs, "y", "alpha", ["log_m", "log_tokens"])
    table = ancova_type2(runs, "y", "alpha", ["log_m", "log_tokens"])
    cols = design.terms["log_m"]
    assert table.loc["log_m", "partial_R2"] == pytest.approx(partial_r2(design.y, design.X, cols), rel=1e-10)
    controls = np.delete(design.X, cols, axis=1)
    expected = _loo_refits(design.y, design.X) - _loo_refits(design.y, controls)
    assert partial_loocv_r2(design.y, design.X, cols) == pytest.approx(expected, rel=1e-10)


def test_ancova_errors_name_the_problem(runs):
    with pytest.raises(ValueError, match="'log_x' not found"):
        ancova_type2(runs, "y", "alpha", "log_x")
    with pytest.raises(ValueError, match="at least 2"):
        ancova_type2(runs.assign(alpha=1.0), "y", "alpha", "log_tokens")
    bad = runs.copy()
    bad.loc[7, "log_tokens"] = np.inf
    with pytest.raises(ValueError, match=r"'log_tokens' has non-finite values at rows \[7\]"):
        ancova_type2(bad, "y", "alpha", "log_tokens")


# --- scaling law -----------------------------------------------------------------------------------------------

def _law(D, E, B, beta):
    return E + B * D ** (-beta)


D_GRID = np.array([1, 2, 3, 4, 6, 8, 10, 12]) * 1e9


@pytest.mark.parametrize("E,B,beta", [(0.13, 3806.0, 0.54), (0.21, 3.2e10, 1.34), (0.16, 1.2e8, 1.04)])
def test_scaling_law_recovers_exact_parameters(E, B, beta):
    fit = fit_scaling_law(D_GRID, _law(D_GRID, E, B, beta))
    assert fit.E == pytest.approx(E, rel=1e-6)
    assert fit.beta == pytest.approx(beta, rel=1e-6)
    assert fit.B == pytest.approx(B, rel=1e-4)
    assert fit.loocv_r2 == pytest.approx(1.0, abs=1e-8)


def test_scaling_law_recovers_parameters_under_noise():
    E, B, beta = 0.13, 3806.0, 0.54
    rng = np.random.default_rng(4)
    M = _law(D_GRID, E, B, beta) * (1 + 5e-4 * rng.normal(size=len(D_GRID)))
    fit = fit_scaling_law(D_GRID, M)
    assert fit.E == pytest.approx(E, rel=0.02)
    assert fit.beta == pytest.approx(beta, rel=0.05)
    assert fit.B == pytest.approx(B, rel=0.3)
    assert fit.tokens_to_within(0.05) == pytest.approx(
        ScalingLawFit(E, B, beta, 1, 1, 0, 8).tokens_to_within(0.05), rel=0.15)
    # It is the least-squares optimum: a local optimiser started at the truth finds nothing better.
    ref, _ = optimize.curve_fit(lambda d, e, lb, b: e + np.exp(lb) * d ** (-b), D_GRID, M,
                                p0=[E, math.log(B), beta], maxfev=20000)
    assert fit.sse <= ((M - _law(D_GRID, ref[0], math.exp(ref[1]), ref[2])) ** 2).sum() * (1 + 1e-9)


def test_scaling_law_loocv_equals_explicit_refits():
    E, B, beta = 0.2, 50.0, 0.3
    D = np.array([2, 4, 6, 8, 10, 12]) * 1e9
    M = _law(D, E, B, beta) + np.array([3, -2, 1, 2, -3, 1]) * 1e-3
    fit = fit_scaling_law(D, M)
    preds = []
    for i in range(len(D)):
        keep = np.arange(len(D)) != i
        p, _ = optimize.curve_fit(lambda d, e, lb, b: e + np.exp(lb) * d ** (-b), D[keep], M[keep],
                                  p0=[fit.E, math.log(fit.B), fit.beta], bounds=([0, -50, 1e-3], [np.inf, 80, 10]),
                                  max_nfev=20000)
        preds.append(p[0] + math.exp(p[1]) * D[i] ** (-p[2]))
    expected = 1 - ((M - np.array(preds)) ** 2).sum() / ((M - M.mean()) ** 2).sum()
    assert fit.loocv_r2 == pytest.approx(expected, abs=2e-3)
    assert fit.loocv_r2 < fit.r2


def test_tokens_to_within_closed_form():
    fit = ScalingLawFit(E=0.13, B=3806.0, beta=0.54, loocv_r2=0.9, r2=0.95, sse=0.0, n=6)
    D = fit.tokens_to_within(0.05)
    assert D == pytest.approx((3806.0 / (0.05 * 0.13)) ** (1 / 0.54), rel=1e-12)
    assert 3806.0 * D ** (-0.54) == pytest.approx(0.05 * 0.13, rel=1e-10)
    assert fit.tokens_to_within(0.01) > D
    assert ScalingLawFit(0.0, 1.0, 0.5, 0, 0, 0, 4).tokens_to_within() == math.inf
    with pytest.raises(ValueError):
        fit.tokens_to_within(0.0)


def test_scaling_law_degenerate_inputs_raise():
    D = np.array([2, 4, 6, 8, 10]) * 1e9
    with pytest.raises(ScalingLawError, match="does not decrease"):
        fit_scaling_law(D, 0.1 + 0.01 * np.arange(5))
    with pytest.raises(ScalingLawError, match="at least 4"):
        fit_scaling_law(D[:3], [0.3, 0.2, 0.15])
    with pytest.raises(ScalingLawError, match="distinct budgets"):
        fit_scaling_law([1e9, 1e9, 2e9, 2e9], [0.3, 0.31, 0.2, 0.21])
    with pytest.raises(ValueError, match="positive"):
        fit_scaling_law([0, 1e9, 2e9, 3e9], [0.4, 0.3, 0.2, 0.15])


# --- per-category significance ---------------------------------------------------------------------------------

def _paired(rng, n, p_before, p_after):
    before = rng.random(n) < p_before
    after = np.where(rng.random(n) < 0.7, before, rng.random(n) < p_after)
    return before, after


def test_mcnemar_matches_binomtest_and_statsmodels():
    rng = np.random.default_rng(5)
    before, after = _paired(rng, 200, 0.45, 0.6)
    res = mcnemar_exact(before, after)
    b, c = int(np.sum(~before & after)), int(np.sum(before & ~after))
    assert (res.gained, res.lost, res.n_items) == (b, c, 200)
    assert res.pvalue == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    table = pd.crosstab(before, after).to_numpy()
    assert res.pvalue == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-10)
    greater = mcnemar_exact(before.astype(int), after.astype(int), alternative="greater")
    assert greater.pvalue == pytest.approx(stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).pvalue == 1.0
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0, 2], [1, 1])


@pytest.mark.parametrize("method,ref", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_pvalues_matches_multipletests(method, ref):
    p = np.array([0.001, 0.04, 0.03, 0.2, 0.04, 0.9, 0.0005, 0.012])
    np.testing.assert_allclose(adjust_pvalues(p, method), multipletests(p, method=ref)[1], rtol=1e-12)


def test_per_category_significance_flags_the_real_gain():
    rng = np.random.default_rng(6)
    cats, before, after = [], [], []
    for name, gain in [("biology", 0.25), ("history", 0.0), ("law", 0.0), ("physics", 0.02)]:
        b, a = _paired(rng, 300, 0.4, 0.4 + gain)
        cats += [name] * 300
        before.append(b)
        after.append(a)
    before, after = np.concatenate(before), np.concatenate(after)
    table = per_category_significance(cats, before, after, method="holm").set_index("category")
    cats = np.array(cats)
    raw = [mcnemar_exact(before[cats == c], after[cats == c]).pvalue for c in table.index]
    np.testing.assert_allclose(table["p"], raw, rtol=1e-12)
    np.testing.assert_allclose(table["p_adjusted"], multipletests(raw, method="holm")[1], rtol=1e-12)
    assert table.loc["biology", "gain"] == pytest.approx(
        100 * (after[cats == "biology"].mean() - before[cats == "biology"].mean()))
    assert table.loc["biology", "improved"]
    assert not table.loc[["history", "law"], "significant"].any()
