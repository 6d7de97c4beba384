"""The `evaluate` stage's configuration, and the second voice's corpus through synthesize and encode."""

from pathlib import Path

import numpy as np
import pytest

from evaluation.test_benchmarks import make_params
from salad.config import ConfigError, EncodeConfig, load_params, params_from_dict
from salad.stages.check_params import check_names
from salad.evaluation.benchmarks import VOICE2
from salad.evaluation.tasks import TASKS
from salad.speech.tts import EspeakTTS
from salad.speech.synthesis import second_voice_tts, synthesize_corpus
from salad.stages.encode import encode
from salad.storage.atomic import read_jsonl
from salad.storage.store import ShardedStore

REPO = Path(__file__).resolve().parents[2]


def test_config_keys_are_validated():
    with pytest.raises(ConfigError, match="evaluate.tasks.*unknown task"):
        check_names(params_from_dict({"evaluate": {"tasks": ["storycloze", "squad"]}}))
    with pytest.raises(ConfigError, match="evaluate.shots_fit_fraction"):
        params_from_dict({"evaluate": {"shots_fit_fraction": 0.0}})
    with pytest.raises(ConfigError, match="evaluate.speech_frames_per_char"):
        params_from_dict({"evaluate": {"speech_frames_per_char": -1}})
    with pytest.raises(ConfigError, match="evaluate.second_voice"):
        params_from_dict({"evaluate": {"second_voice": " "}})
    with pytest.raises(ConfigError, match="evaluate.shots"):
        params_from_dict({"evaluate": {"shots": 6}})


def test_default_world_evaluates_all_six_tasks():
    p = load_params(REPO / "params.yaml")
    assert set(p.evaluate.tasks) == set(TASKS) and p.evaluate.shots == 5 and p.evaluate.second_voice


# --- the second voice through synthesize and encode ------------------------------------------------------------

def test_second_voice_synthesizer():
    assert second_voice_tts(make_params(voice=None)) is None
    tts = second_voice_tts(make_params(voice="en-us+f3"))
    assert isinstance(tts, EspeakTTS) and tts.voice == "en-us+f3"
    with pytest.raises(ValueError, match="evaluate.second_voice.*kokoro_model"):
        second_voice_tts(make_params(voice="voices/am_michael.pt"))


def test_encode_picks_up_the_second_voice_corpus(tmp_path):
    speech, features = tmp_path / "speech", tmp_path / "features"
    docs = [{"id": "ctx-a", "text": "Question: Where do fish live? Answer:"}]
    for name in ("speech", "test", "eval"):
        synthesize_corpus(EspeakTTS(), docs, speech / name, name)
    synthesize_corpus(EspeakTTS(voice="en-us+f3"), [], speech / VOICE2, VOICE2)  # no second voice: empty
    cfg = EncodeConfig(encoder="logmel", n_mels=8, workers=1)
    stats = encode(cfg, speech, None, features)
    assert stats[VOICE2]["documents"] == 0 and len(ShardedStore(features / VOICE2)) == 0
    synthesize_corpus(EspeakTTS(voice="en-us+f3"), docs, speech / VOICE2, VOICE2)
    encode(cfg, speech, None, features)
    assert ShardedStore(features / VOICE2).ids() == ["ctx-a"]
    assert read_jsonl(speech / VOICE2 / "index.jsonl")[0]["voice"] == "en-us+f3"
    a, b = ShardedStore(features / "eval").array("ctx-a"), ShardedStore(features / VOICE2).array("ctx-a")
    assert a.shape[1] == b.shape[1] and not (a.shape == b.shape and np.array_equal(a, b))  # another voice
    import shutil

    shutil.rmtree(speech / VOICE2)  # a corpus no longer synthesized loses its stale features
    encode(cfg, speech, None, features)
    assert not (features / VOICE2).exists()
