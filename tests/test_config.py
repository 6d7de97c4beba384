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
    with pytest.raises(ConfigError, match="teacher.context: expected an integer"):
        params_from_dict({"teacher": {"context": "long"}})


@pytest.mark.parametrize("raw,message", [
    # a bool where an int or a float is expected (YAML's `true` is not 1)
    ({"train": {"batch_size": True}}, r"train.batch_size: expected an integer, got True"),
    ({"train": {"lr_lm": False}}, r"train.lr_lm: expected a number, got False"),
    ({"seed": True}, r"seed: expected an integer"),
    # a string where a list is expected (it would iterate into characters)
    ({"grid": {"data": "speech"}}, r"grid.data: expected a list, got 'speech'"),
    ({"evaluate": {"tasks": "piqa"}}, r"evaluate.tasks: expected a list"),
    ({"train": {"speech_span_words": [5]}}, r"train.speech_span_words: expected a list of 2 values"),
    ({"train": {"budgets": [1000, "2000"]}}, r"train.budgets\[1\]: expected an integer"),
    # a float that is not finite
    ({"train": {"lr_lm": float("nan")}}, r"train.lr_lm: must be a finite number"),
    ({"active": {"gammas": [0.0, float("inf")]}}, r"active.gammas\[1\]: must be a finite number"),
    # negative learning rates, weight decay, warmup
    ({"train": {"lr_adapter": -1e-3}}, r"train.lr_adapter: must be positive"),
    ({"train": {"lr_lm": -1e-4}}, r"train.lr_lm: must be 0 \(LM frozen\) or positive"),
    ({"train": {"weight_decay": -0.1}}, r"train.weight_decay: must be 0 or positive"),
    ({"train": {"warmup_steps": -3}}, r"train.warmup_steps: must be 0 or positive"),
    ({"teacher": {"weight_decay": -0.1}}, r"teacher.weight_decay: must be 0 or positive"),
    ({"teacher": {"warmup_steps": -1}}, r"teacher.warmup_steps: must be 0 or positive"),
    # a threshold outside its physical range
    ({"natural": {"min_peak_dbfs": 3.0}}, r"natural.min_peak_dbfs: is a level in dB relative to full scale"),
    # a section that is null, or not a mapping
    ({"train": None}, r"params:train: is empty \(null\)"),
    ({"train": [1, 2]}, r"params:train: expected a mapping"),
])
def test_silent_gaps_are_clear_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        params_from_dict(raw)


@pytest.mark.parametrize("text,message", [
    ("", r"the params file is empty"),
    ("# only a comment\n", r"the params file is empty"),
    ("- seed\n- alpha\n", r"must be a mapping of sections .* got a list"),
    ("train: {batch_size: [1, 2\n", r"not valid YAML"),
])
def test_a_params_file_that_is_not_a_mapping_is_refused(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_params(path)


def test_invalid_span_range():
    with pytest.raises(ConfigError, match="speech_span_words"):
        params_from_dict({"train": {"speech_span_words": [15, 5]}})


def test_dataclass_defaults_are_the_default_world():
    assert load_params(REPO / "params.yaml") == Params()
