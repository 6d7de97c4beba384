"""Properties of the weight-free log-mel encoder (salad.speech.encoders.logmel)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salad.speech.encoders import FRAME_RATE, n_frames
from salad.speech.encoders.logmel import LOG_MEL_SCALE, LOG_MEL_SHIFT, LogMelEncoder, mel_filterbank

SR = 24000


@pytest.fixture(scope="module")
def encoder() -> LogMelEncoder:
    return LogMelEncoder()


def noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_n_frames() -> None:
    assert FRAME_RATE == 12.5
    assert n_frames(0.0) == 0
    assert n_frames(0.08) == 1
    assert n_frames(0.0801) == 2
    assert n_frames(1.0) == 13
    assert n_frames(1920 / SR) == 1  # exactly one frame's worth, despite float error
    with pytest.raises(ValueError):
        n_frames(-1.0)


@pytest.mark.parametrize("n_samples", [1, 1919, 1920, 1921, 24000, 2 * 24000 + 7, 10 * 1920])
def test_shape_and_dtype(encoder: LogMelEncoder, n_samples: int) -> None:
    feats = encoder(noise(n_samples), SR)
    assert feats.dtype == np.float32
    assert feats.shape == (n_frames(n_samples / SR), 4 * 80) == (math.ceil(n_samples / 1920), encoder.dim)
    assert np.all(np.isfinite(feats))


def test_dim_follows_n_mels() -> None:
    enc = LogMelEncoder(n_mels=40)
    assert enc.dim == 160
    assert enc(noise(5000), SR).shape == (3, 160)


def test_deterministic_and_independent_of_context(encoder: LogMelEncoder) -> None:
    a, b = noise(20 * 1920, seed=1), noise(7 * 1920, seed=2)
    fa = encoder(a, SR)
    assert np.array_equal(fa, encoder(a.copy(), SR))
    # Fixed normalisation: a clip's frames do not change when other audio follows it (the last frame of `a` sees
    # 2.5 ms of `b` through its window, so it is left out).
    fab = encoder(np.concatenate([a, b]), SR)
    np.testing.assert_allclose(fab[:19], fa[:19], rtol=0, atol=1e-5)
    # ... and a louder clip moves the features by a fixed amount, not back to zero mean.
    assert encoder(4 * a, SR).mean() - fa.mean() == pytest.approx(math.log(16) / LOG_MEL_SCALE, abs=0.05)


def test_silence_maps_to_the_floor(encoder: LogMelEncoder) -> None:
    feats = encoder(np.zeros(SR, dtype=np.float32), SR)
    np.testing.assert_allclose(feats, (math.log(1e-6) - LOG_MEL_SHIFT) / LOG_MEL_SCALE, atol=1e-5)


def test_tone_burst_lands_in_its_frames(encoder: LogMelEncoder) -> None:
    audio = np.zeros(3 * SR, dtype=np.float32)
    t = np.arange(int(0.2 * SR)) / SR
    audio[SR:SR + len(t)] = 0.5 * np.sin(2 * np.pi * 1000.0 * t)  # [1.0, 1.2) s
    feats = encoder(audio, SR)
    energy = feats.max(axis=1)  # a pure tone lights up only a few mel bins
    floor = (math.log(1e-6) - LOG_MEL_SHIFT) / LOG_MEL_SCALE
    # Frames 12, 13, 14 cover [0.96, 1.04), [1.04, 1.12), [1.12, 1.20): all hold the tone.
    assert np.all(energy[12:15] > floor + 1.0)
    far = np.r_[0:11, 16:len(energy)]
    np.testing.assert_allclose(energy[far], floor, atol=1e-4)
    # The tone is at 1 kHz in every sub-frame of the middle frame: the loudest mel bin is the one around 1 kHz.
    edges = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 82) / 2595) - 1)
    expected_bin = int(np.argmin(np.abs(edges[1:-1] - 1000)))
    for sub in feats[13].reshape(4, 80):
        assert abs(int(np.argmax(sub)) - expected_bin) <= 1


def test_every_mel_filter_sees_some_frequency() -> None:
    filters = mel_filterbank(80, 1024, SR)
    assert filters.shape == (513, 80)
    assert np.all(filters.max(axis=0) > 0.3)


def test_sample_rate_mismatch_raises(encoder: LogMelEncoder) -> None:
    with pytest.raises(ValueError, match="16000.*24000"):
        encoder(noise(16000), 16000)


def test_bad_audio_raises(encoder: LogMelEncoder) -> None:
    with pytest.raises(ValueError, match="empty"):
        encoder(np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="1-D"):
        encoder(np.zeros((2, 100), dtype=np.float32), SR)
    with pytest.raises(ValueError, match="floating"):
        encoder(np.zeros(100, dtype=np.int16), SR)
    with pytest.raises(ValueError, match="NaN"):
        encoder(np.full(100, np.nan, dtype=np.float32), SR)
