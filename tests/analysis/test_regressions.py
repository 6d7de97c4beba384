"""salad.analysis.regressions (Fig 3, Tables 1, 2, 7) against statsmodels fitted here, explicit refits, or known parameters."""

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from salad.analysis import regressions as analysis

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
BUDGETS = [15_000, 30_000, 60_000, 120_000, 240_000, 480_000]


@pytest.fixture
def grid():
    """A grid_results-shaped frame: 2 data sides × 5 α × 6 budgets, noisy accuracies (fractions) and M, F."""
    rng = np.random.default_rng(7)
    rows = []
    for data in ("speech", "broad"):
        for alpha in ALPHAS:
            for budget in BUDGETS:
                positions = int(budget * rng.uniform(1.0, 1.04))
                M = (0.5 - 0.3 * alpha + 20.0 * positions ** -0.5) * math.exp(rng.normal(scale=0.1))
                F = 0.03 - 0.01 * alpha + 0.002 * math.log(positions / 1e4) + rng.normal(scale=0.003)
                rows.append({"data": data, "alpha": alpha, "budget": budget, "positions": positions, "M": M,
                             "M_se": 0.01, "F": F,
                             "speech_accuracy": 0.45 - 0.05 * math.log(M) + 0.01 * alpha + rng.normal(scale=0.01),
                             "text_accuracy": 0.6 - 2.0 * F + rng.normal(scale=0.005)})
    return pd.DataFrame(rows)


def narrow(grid):
    d = grid[grid["data"] == "speech"].reset_index(drop=True).copy()
    d["speech"] = 100 * d["speech_accuracy"]
    d["text"] = 100 * d["text_accuracy"]
    d["logM"] = np.log(d["M"])
    d["logT"] = np.log(d["positions"])
    return d


def loo_r2(formula, d, y):
    """LOOCV R² by n explicit statsmodels refits, each without one model, predicting it."""
    model = smf.ols(formula, d)
    X, yv = model.exog, model.endog
    keep = lambda i: np.arange(len(yv)) != i  # noqa: E731
    pred = np.array([sm.OLS(yv[keep(i)], X[keep(i)]).fit().predict(X[i:i + 1])[0] for i in range(len(yv))])
    return 1 - ((yv - pred) ** 2).sum() / ((yv - yv.mean()) ** 2).sum()


def test_table1_matches_statsmodels(grid):
    t = analysis.table1(grid).set_index(["response", "predictor"])
    d = narrow(grid)
    assert len(t) == 8 and (t["n"] == 30).all()
    for response in ("speech", "text"):
        for label, term in (("Misalignment", "logM"), ("Forgetting", "F")):
            ref = smf.ols(f"{response} ~ {term}", d).fit()
            row = t.loc[(response, label)]
            assert row["slope"] == pytest.approx(ref.params[term], rel=1e-10)
            assert row["intercept"] == pytest.approx(ref.params["Intercept"], rel=1e-10)
            assert row["slope_se"] == pytest.approx(ref.bse[term], rel=1e-10)
            assert row["slope_p"] == pytest.approx(ref.pvalues[term], rel=1e-8)
            assert row["R2"] == pytest.approx(ref.rsquared, rel=1e-10)
            assert row["LOOCV_R2"] == pytest.approx(loo_r2(f"{response} ~ {term}", d, response), rel=1e-9)
        for focal, other, ft, ot in (("Misalignment", "Forgetting", "logM", "F"),
                                     ("Forgetting", "Misalignment", "F", "logM")):
            full = smf.ols(f"{response} ~ {ft} + {ot}", d).fit()
            reduced = smf.ols(f"{response} ~ {ot}", d).fit()
            row = t.loc[(response, f"{focal} given {other}")]
            assert row["slope"] == pytest.approx(full.params[ft], rel=1e-10)
            assert row["R2"] == pytest.approx((reduced.ssr - full.ssr) / reduced.ssr, rel=1e-9)
            expected_cv = loo_r2(f"{response} ~ {ft} + {ot}", d, response) - loo_r2(f"{response} ~ {ot}", d, response)
            assert row["LOOCV_R2"] == pytest.approx(expected_cv, rel=1e-8, abs=1e-12)
    # The paper's cells sit beside ours: Table 1 everywhere, Figure 3's LOOCV R² on the two panels only.
    assert t.loc[("speech", "Misalignment"), "paper_table1"] == 0.750
    assert t.loc[("text", "Misalignment given Forgetting"), "paper_table1"] == -0.001
    assert t.loc[("speech", "Misalignment"), "paper_LOOCV_R2"] == 0.75
    assert t.loc[("text", "Forgetting"), "paper_LOOCV_R2"] == 0.74
    assert t["paper_LOOCV_R2"].notna().sum() == 2


def test_figure3_band_is_the_confidence_interval_of_the_mean(grid):
    fits = analysis.figure3_fits(grid, points=7)
    d = narrow(grid)
    for side, term in (("speech", "logM"), ("text", "F")):
        ref = smf.ols(f"{side} ~ {term}", d).fit()
        band = fits[side]["band"]
        frame = ref.get_prediction(pd.DataFrame({term: band["x"]})).summary_frame(alpha=0.05)
        np.testing.assert_allclose(band["mean"], frame["mean"], rtol=1e-10)
        np.testing.assert_allclose(band["lower"], frame["mean_ci_lower"], rtol=1e-10)
        np.testing.assert_allclose(band["upper"], frame["mean_ci_upper"], rtol=1e-10)
        assert band["x"].iloc[0] == d[term].min() and band["x"].iloc[-1] == d[term].max()
        assert fits[side]["loocv_r2"] == pytest.approx(loo_r2(f"{side} ~ {term}", d, side), rel=1e-9)


def test_table7_matches_anova_lm_type2(grid):
    t = analysis.table7(grid)
    d = narrow(grid)
    for side, focal, label in (("speech", "logM", "log(misalignment)"), ("text", "F", "forgetting")):
        ours = t[t["side"] == side].set_index("term")
        assert list(ours.index) == [label, "α (FE)", "log(tokens)", "Residual"]
        fit = smf.ols(f"{side} ~ {focal} + C(alpha) + logT", d).fit()
        ref = anova_lm(fit, typ=2).rename(index={focal: label, "C(alpha)": "α (FE)", "logT": "log(tokens)"})
        ss_resid = ref.loc["Residual", "sum_sq"]
        for term in (label, "α (FE)", "log(tokens)"):
            ss = ref.loc[term, "sum_sq"]
            assert ours.loc[term, "SS"] == pytest.approx(ss, rel=1e-8)
            assert ours.loc[term, "df"] == ref.loc[term, "df"]
            assert ours.loc[term, "F"] == pytest.approx(ref.loc[term, "F"], rel=1e-8)
            assert ours.loc[term, "p"] == pytest.approx(ref.loc[term, "PR(>F)"], rel=1e-6)
            assert ours.loc[term, "partial_R2"] == pytest.approx(ss / (ss + ss_resid), rel=1e-8)
        assert ours.loc["Residual", "SS"] == pytest.approx(ss_resid, rel=1e-10)
        assert ours.loc["Residual", "df"] == 30 - 7
        # Appendix A.6: R²_cv(full) − R²_cv(controls α and log tokens), by explicit refits.
        cv_full = loo_r2(f"{side} ~ {focal} + C(alpha) + logT", d, side)
        cv_controls = loo_r2(f"{side} ~ C(alpha) + logT", d, side)
        assert ours.loc[label, "partial_LOOCV_R2"] == pytest.approx(cv_full - cv_controls, rel=1e-7, abs=1e-10)
    speech = t[t["side"] == "speech"].set_index("term")
    assert speech.loc["log(misalignment)", "paper_SS"] == 2.789
    assert speech.loc["log(misalignment)", "paper_partial_LOOCV_R2"] == 0.34
    assert speech.loc["Residual", "paper_df"] == 23
    assert math.isnan(speech.loc["α (FE)", "paper_partial_LOOCV_R2"])


def test_table2_recovers_a_noiseless_law_and_reports_failures():
    E, B, beta = 0.2, 50.0, 0.6
    rows = []
    for data, alpha, law in (("speech", 0.5, True), ("speech", 0.0, False), ("broad", 1.0, True),
                             ("broad", 0.25, None)):
        for D in BUDGETS:
            if law is None:
                M = 0.3  # flat: B = 0, the fit must be refused
            elif law:
                M = E + B * D ** -beta
            else:
                M = 0.5 + 0.01 * math.log(D)
            rows.append({"data": data, "alpha": alpha, "budget": D, "positions": D, "M": M, "M_se": 0.0, "F": 0.01,
                         "speech_accuracy": 0.5, "text_accuracy": 0.5})
    t = analysis.table2(pd.DataFrame(rows)).set_index(["data", "alpha"])
    assert ("speech", 0.0) not in t.index  # the paper's α > 0 by default
    for key in (("speech", 0.5), ("broad", 1.0)):
        row = t.loc[key]
        assert row["status"] == "ok"
        assert row["E"] == pytest.approx(E, rel=1e-6)
        assert row["B"] == pytest.approx(B, rel=1e-5)
        assert row["beta"] == pytest.approx(beta, rel=1e-6)
        assert row["LOOCV_R2"] == pytest.approx(1.0, abs=1e-8)
        assert row["tokens_at_5pct_E"] == pytest.approx((B / (0.05 * E)) ** (1 / beta), rel=1e-5)
        assert bool(row["tokens_beyond_data"]) is ((B / (0.05 * E)) ** (1 / beta) > max(BUDGETS))
    failed = t.loc[("broad", 0.25)]
    assert failed["status"].startswith("no fit:") and "B = 0" in failed["status"]
    assert all(math.isnan(failed[c]) for c in ("E", "B", "beta", "LOOCV_R2", "tokens_at_5pct_E"))
    assert t.loc[("speech", 0.5), "paper_E"] == 0.21 and t.loc[("broad", 1.0), "paper_B"] == 5.4
    assert math.isnan(t.loc[("broad", 0.25), "paper_E"])
    with_nll = analysis.table2(pd.DataFrame(rows), alphas=[0.0])
    assert list(with_nll["alpha"]) == [0.0]


def test_prepare_selects_the_side_and_rejects_bad_frames(grid):
    d = analysis.prepare(grid)
    assert set(d["data"]) == {"speech"} and len(d) == 30
    assert d["speech_pct"].iloc[0] == pytest.approx(100 * d["speech_accuracy"].iloc[0])
    assert len(analysis.prepare(grid, data=None)) == 60
    with pytest.raises(ValueError, match="no grid models"):
        analysis.prepare(grid, data="web")
    with pytest.raises(ValueError, match="lacks columns"):
        analysis.prepare(grid.drop(columns="F"))
    bad = grid.copy()
    bad.loc[0, "M"] = 0.0
    with pytest.raises(ValueError, match="M must be positive"):
        analysis.prepare(bad)
