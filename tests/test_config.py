from pathlib import Path

import pytest
import yaml

from salad.config import ConfigError, Params, load_params, params_from_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["params.yaml", "params/ci.yaml"])
def test_profiles_load_and_cover_every_key(profile):
    """Every knob is written out in each profile (no silent defaults)."""
    params = load_params(REPO / profile)
    assert isinstance(params, Params)
    raw = yaml.safe_load((REPO / profile).read_text())
    defaults = Params()
    for section in ("prepare", "teacher", "synthesize", "encode", "train", "measure", "evaluate"):
        declared = set(getattr(defaults, section).__dataclass_fields__)
        missing = declared - set(raw[section])
        assert not missing, f"{profile}:{section} leaves {sorted(missing)} implicit"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"train.*unknown key.*\['lr'\]"):
        params_from_dict({"train": {"lr": 1e-3}})


def test_alpha_out_of_range():
    with pytest.raises(ConfigError, match="alpha"):
        params_from_dict({"alpha": 1.5})


def test_yaml_scientific_strings_become_floats():
    assert params_from_dict({"train": {"lr_lm": "5e-5"}}).train.lr_lm == 5e-5


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="teacher.context.*expected int"):
        params_from_dict({"teacher": {"context": "long"}})


def test_invalid_span_range():
    with pytest.raises(ConfigError, match="speech_span_words"):
        params_from_dict({"train": {"speech_span_words": [15, 5]}})


def test_dataclass_defaults_are_the_default_world():
    assert load_params(REPO / "params.yaml") == Params()
