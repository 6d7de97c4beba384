"""The phone encoder (salad.speech.encoders.phones): its labels, its causality, its contract as an encoder, and the
`phones` stage that trains it (salad.stages.phones), on a tiny training set."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from salad.config import EncodeConfig, Params, PhonesConfig
from salad.speech.encoders import make_encoder, n_frames
from salad.speech.encoders.logmel import LogMelEncoder
from salad.speech.encoders.phones import (PAUSE, SILENCE_FEATURE, PhoneClassifier, PhoneEncoder, context_windows,
                                          phone_class, save_classifier, subframe_labels)
from salad.speech.tts import EspeakTTS, PhonemeTime
from salad.stages.phones import train_phones
from salad.storage.atomic import write_jsonl

SR = 24000


def test_phone_class_drops_stress_and_folds_pauses():
    assert [phone_class(n) for n in ["'a", ",I", "@2", "t#", "_", "_:", "_!", "'aI"]] == \
        ["a", "I", "@2", "t#", PAUSE, PAUSE, PAUSE, "aI"]


def test_subframe_labels_take_the_phone_spoken_at_each_centre():
    phonemes = [PhonemeTime("k", 0.031), PhonemeTime("'a", 0.05), PhonemeTime("t", 0.09), PhonemeTime("_:", 0.13)]
    # centres 0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15
    assert subframe_labels(phonemes, 8) == [PAUSE, PAUSE, "a", "a", "t", "t", PAUSE, PAUSE]
    assert subframe_labels([], 3) == [PAUSE] * 3


def test_context_windows_read_the_frame_and_the_ones_before_it():
    logmel = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
    windows = context_windows(logmel, 3)
    assert windows.shape == (5, 6)
    np.testing.assert_array_equal(windows[0], [SILENCE_FEATURE] * 4 + [0, 1])
    np.testing.assert_array_equal(windows[4], [4, 5, 6, 7, 8, 9])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An untrained classifier folder (random weights): the contract does not depend on training."""
    folder = tmp_path_factory.mktemp("phones")
    torch.manual_seed(0)
    save_classifier(PhoneClassifier(16, 5, 32, 3), {"n_mels": 16, "context_frames": 3, "hidden": 32,
                                                    "phones": [PAUSE, "a", "k", "s", "t"]}, folder)
    return folder


def test_the_encoder_contract(classifier):
    enc = make_encoder(EncodeConfig(encoder="phones"), classifier)
    assert isinstance(enc, PhoneEncoder) and enc.dim == 4 * 5
    audio = (0.1 * np.random.default_rng(0).standard_normal(SR + 7)).astype(np.float32)
    feats = enc(audio, SR)
    assert feats.shape == (n_frames(len(audio) / SR), 20) and feats.dtype == np.float32
    assert feats.min() >= -1 and feats.max() <= 1
    # each sub-frame's block is a scaled log-posterior: exp(5x - 5) sums to 1 (no posterior is below the floor here)
    probabilities = np.exp(5 * feats.reshape(-1, 4, 5) - 5)
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-4)
    assert np.array_equal(pickle.loads(pickle.dumps(enc))(audio, SR), feats)
    with pytest.raises(ValueError, match="sample rate 16000 Hz"):
        enc(audio, 16000)


def test_a_frame_never_hears_audio_after_its_end(classifier):
    enc = PhoneEncoder(classifier)
    rng = np.random.default_rng(1)
    a, b = (0.1 * rng.standard_normal(20 * 1920)).astype(np.float32), (0.1 * rng.standard_normal(9 * 1920)).astype(np.float32)
    # like the log-mel encoder, the last frame of `a` sees 2.5 ms of `b` through its window: it is left out
    np.testing.assert_allclose(enc(np.concatenate([a, b]), SR)[:19], enc(a, SR)[:19], atol=1e-5)


def test_repr_names_the_weights_and_a_missing_classifier_says_how_to_make_it(classifier, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    torch.manual_seed(1)
    save_classifier(PhoneClassifier(16, 5, 32, 3), {"n_mels": 16, "context_frames": 3, "hidden": 32,
                                                    "phones": [PAUSE, "a", "k", "s", "t"]}, other)
    assert repr(PhoneEncoder(classifier)) != repr(PhoneEncoder(other))
    assert str(classifier) not in repr(PhoneEncoder(classifier))  # moving the folder keeps cached features
    with pytest.raises(FileNotFoundError, match=r"no trained phone classifier .*dvc repro phones"):
        PhoneEncoder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs the trained phone classifier"):
        make_encoder(EncodeConfig(encoder="phones"))


def test_the_stage_trains_a_classifier_that_hears_phones(tmp_path):
    """Trained on 24 short documents for a few epochs, the classifier labels held-out speech far above the share of
    the most frequent class, in the fixed voice; the folder reloads to the encoder that made the metrics."""
    words = ("the cat sat on a mat while seven birds sang songs near the old stone bridge and children ran past "
             "quiet fields full of yellow flowers before the rain came down").split()
    rng = np.random.default_rng(0)
    docs = [{"id": f"d{i}", "text": " ".join(rng.choice(words, 25))} for i in range(30)]
    write_jsonl(tmp_path / "speech.jsonl", docs[:24])
    write_jsonl(tmp_path / "test.jsonl", docs[24:])
    params = Params(phones=PhonesConfig(docs=24, voices=("en-us",), rates=(175,), heldout_docs=6, n_mels=40,
                                        hidden=128, epochs=12, batch_size=128, lr=3e-3))
    metrics = train_phones(params, tmp_path, tmp_path / "model", tmp_path / "live", tmp_path / "metrics.json")
    held = metrics["heldout"]["en-us"]
    assert held["frames"] > 300 and held["accuracy_speech"] > 0.5, metrics
    enc = PhoneEncoder(tmp_path / "model")
    assert enc.dim == metrics["feature_dim"] == 4 * metrics["phones"]
    speech = EspeakTTS().synthesize(docs[-1]["text"])
    assert enc(speech.audio, SR).shape == (n_frames(speech.duration), enc.dim)
    again = train_phones(params, tmp_path, tmp_path / "model2", tmp_path / "live2", tmp_path / "metrics2.json")
    assert again == metrics and repr(PhoneEncoder(tmp_path / "model2")) == repr(enc)  # same params, same weights


def test_bad_settings_are_errors_naming_the_key():
    from salad.config import ConfigError

    with pytest.raises(ConfigError, match="phones.rates"):
        PhonesConfig(rates=(500,))
    with pytest.raises(ConfigError, match="phones.voices"):
        PhonesConfig(voices=())
    with pytest.raises(ConfigError, match="phones.context_frames"):
        PhonesConfig(context_frames=0)
