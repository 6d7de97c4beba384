"""metrics/headline.json: the main run's few numbers, read from the stages' metrics as they write them."""

import json

import pytest

from salad.stages.headline import headline


def test_headline_takes_M_F_the_best_format_averages_and_the_gaps_in_points(tmp_path):
    (tmp_path / "measure.json").write_text(json.dumps({"M": 0.0731536547, "M_se": 9.72283e-05, "F": 0.0020050697,
                                                       "M_shuffled": 0.08}))
    best = {"teacher": {"text": {"average": 0.35}}, "student": {"text": {"average": 0.3521},
                                                               "speech": {"average": 0.3434}}}
    gaps = {"speech": {"average": 0.0066}, "text": {"average": -0.0021}}
    (tmp_path / "evaluate.json").write_text(json.dumps({"best": best, "gaps": gaps, "results": {}}))
    out = tmp_path / "headline.json"
    result = headline(tmp_path / "measure.json", tmp_path / "evaluate.json", out)
    assert json.loads(out.read_text()) == result
    assert result == {"M": 0.0731537, "M_se": 9.72283e-05, "F": 0.00200507,
                      "acc_teacher": 0.35, "acc_text": 0.3521, "acc_speech": 0.3434,
                      "gap_speech": pytest.approx(0.66), "gap_text": pytest.approx(-0.21)}
