"""salad.analysis.findings: every verdict follows its stated rule, in both directions."""

import math

import pandas as pd
import pytest

from salad.analysis import findings

ALPHAS = [0.0, 0.5, 1.0]
BUDGETS = [(10_000, 10_100), (20_000, 20_300), (40_000, 40_100)]


def grid(M, F=lambda d, a, p: 0.01 * (1 - a), acc=0.34, se=0.001):
    return pd.DataFrame([{"data": d, "alpha": a, "budget": b, "positions": p, "M": M(d, a, p), "M_se": se,
                          "F": F(d, a, p), "speech_accuracy": acc, "text_accuracy": acc}
                         for d in ("speech", "broad") for a in ALPHAS for b, p in BUDGETS])


def test_distillation_verdict_follows_the_standard_error_rule():
    good = grid(lambda d, a, p: 0.2 - 0.1 * a)
    assert findings.distillation_lowers_M(good)["verdict"] == "yes"
    assert "in 6 of 6" in findings.distillation_lowers_M(good)["numbers"]
    tiny = grid(lambda d, a, p: 0.2 - 0.001 * a)  # a difference within 2 standard errors (0.0014)
    assert findings.distillation_lowers_M(tiny)["verdict"] == "no"
    half = grid(lambda d, a, p: 0.2 - (0.1 * a if d == "speech" else 0.0))
    assert findings.distillation_lowers_M(half)["verdict"] == "partly"
    assert findings.distillation_avoids_forgetting(good)["verdict"] == "yes"
    assert findings.distillation_avoids_forgetting(grid(lambda d, a, p: 0.1, F=lambda d, a, p: 0.01))["verdict"] == "no"


def test_nll_on_narrow_data_and_broad_data():
    def m(d, a, p):  # α = 0 on the narrow side grows with ln(positions), with a little noise off the line
        growth = 0.02 * math.log(p / 10_000) + (1e-4 if p == 20_300 else 0.0) if a == 0 and d == "speech" else 0.0
        return 0.1 + growth + (0.05 if d == "speech" else 0.0)

    rising = grid(m)
    assert findings.nll_raises_M_on_narrow_data(rising, "speech")["verdict"] == "yes"
    falling = grid(lambda d, a, p: 1.0 / p)
    assert findings.nll_raises_M_on_narrow_data(falling, "speech")["verdict"] == "no"
    assert findings.broad_data_lowers_M(rising, "speech", "broad")["verdict"] == "yes"
    assert findings.broad_data_lowers_M(falling, "speech", "broad")["verdict"] == "no"


def table1(slope, p, response="speech", regressors="log_M"):
    return pd.DataFrame([{"response": response, "kind": "univariate", "regressors": regressors, "slope": slope,
                          "slope_se": 1.0, "slope_p": p, "LOOCV_R2": 0.5}])


def test_accuracy_claims_get_yes_or_no():
    g = grid(lambda d, a, p: 0.1, acc=0.36)
    assert findings.speech_accuracy_falls_with_log_M(table1(-2.0, 0.3), g, 1 / 3)["verdict"] == "no"
    assert findings.speech_accuracy_falls_with_log_M(table1(-2.0, 0.01), g, 1 / 3)["verdict"] == "yes"
    assert findings.speech_accuracy_falls_with_log_M(table1(2.0, 0.01), g, 1 / 3)["verdict"] == "no"  # rises
    high = grid(lambda d, a, p: 0.1, acc=0.7)
    assert findings.text_accuracy_falls_with_F(table1(-5.0, 0.3, "text", "F"), high, 1 / 3)["verdict"] == "no"
    assert "chance 33.3%" in findings.text_accuracy_falls_with_F(table1(-5.0, 0.3, "text", "F"), high, 1 / 3)["numbers"]


def test_stage2_claims():
    stage2 = pd.DataFrame([{"stage": "I", "gamma": float("nan"), "budget": 0.0, "M": 0.10, "M_se": 0.001},
                           {"stage": "II", "gamma": 0.0, "budget": 0.01, "M": 0.08, "M_se": 0.001},
                           {"stage": "II", "gamma": 5.0, "budget": 0.01, "M": 0.06, "M_se": 0.001},
                           {"stage": "II", "gamma": 0.0, "budget": 0.1, "M": 0.10, "M_se": 0.001},
                           {"stage": "II", "gamma": 5.0, "budget": 0.1, "M": 0.10, "M_se": 0.001}])
    stage2["speech_accuracy_se"] = 0.01
    table4 = pd.DataFrame([{"task": "average", "paper_task": "", "uniform": 40.0, "active": 41.0,
                            "paper_uniform": float("nan"), "paper_active": float("nan")},
                           {"task": "benchmarks average", "paper_task": "mean of the six", "uniform": 33.0,
                            "active": 34.0, "paper_uniform": 70.3, "paper_active": 71.95}])
    assert findings.stage2_lowers_M(stage2)["verdict"] == "partly"
    # M lower and accuracy not significantly higher (1 point against 2 x 1.4): partly; neither: no
    assert findings.active_beats_uniform(stage2, table4, 5.0, 0.01)["verdict"] == "partly"
    claim = findings.active_beats_uniform(stage2, table4, 5.0, 0.1)
    assert claim["verdict"] == "no" and "72.0% vs 70.3% over its six benchmarks, where ours are 34.0% vs 33.0%" in \
        claim["numbers"]
    table4.loc[0, "active"] = 45.0
    assert findings.active_beats_uniform(stage2, table4, 5.0, 0.01)["verdict"] == "yes"


def test_average_chance():
    ev = {"results": {"teacher": {"piqa": {"f": {"text": {"chance": 0.5}}}, "obqa": {"f": {"text": {"chance": 0.25}}}}}}
    assert findings.average_chance(ev) == pytest.approx(0.375)
    ev["results"]["teacher"]["agreement"] = {"continuation": {"text": {"chance": 0.5}}}
    assert findings.average_chance(ev) == 0.5  # the headline: the family's tasks only


def test_a_grid_too_small_for_the_statistics_gives_reasons_not_errors():
    from salad.analysis import regressions as analysis

    small = grid(lambda d, a, p: 0.1 + 0.1 * (1 - a), acc=0.34)  # every accuracy equal: R² undefined
    t1 = analysis.or_reason(analysis.table1, small)
    assert list(t1.columns) == ["status"] and "constant" in t1["status"].iloc[0]
    claim = findings.speech_accuracy_falls_with_log_M(t1, small, 1 / 3)
    assert claim["verdict"] == "not measurable" and claim["numbers"] == t1["status"].iloc[0]
    fits = analysis.figure3_fits(small)
    assert "band" not in fits["speech"] and fits["speech"]["status"].startswith("not estimable")
    two = small[small["budget"] != 20_000]
    assert findings.nll_raises_M_on_narrow_data(two, "speech")["verdict"] == "not measurable"
