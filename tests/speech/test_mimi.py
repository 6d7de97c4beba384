"""The Mimi backend through moshi's real load path, on a random-weight stand-in checkpoint (salad.scale.mimi_standin)."""

import pickle

import numpy as np
import pytest
import torch

from salad.config import ConfigError, EncodeConfig, params_from_dict
from salad.speech.encoders import make_encoder, n_frames
from salad.speech.encoders.mimi import MIMI_HUB_REPO, MIMI_WEIGHTS_FILE, MimiEncoder, weights_digest
from salad.scale.mimi_standin import build_random_mimi_checkpoint
from salad.speech.tts import EspeakTTS

SR = 24000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_random_mimi_checkpoint(tmp_path_factory.mktemp("mimi") / "mimi.safetensors")


@pytest.fixture(scope="module")
def mimi(checkpoint):
    return MimiEncoder(checkpoint)


@pytest.fixture(scope="module")
def speech():
    """Speech the stand-in's codebooks were not fitted on."""
    tts = EspeakTTS()
    return [tts.synthesize(t).audio for t in (
        "Rivers run down from the mountains to the sea.",
        "Nobody expected the committee to approve it so quickly.",
    )]


def codes_of(mimi: MimiEncoder, audio: np.ndarray) -> torch.Tensor:
    x = np.zeros((1, 1, n_frames(len(audio) / SR) * 1920), dtype=np.float32)
    x[0, 0, :len(audio)] = audio
    with torch.inference_mode():
        return mimi.model.encode(torch.from_numpy(x))[0]  # [num_codebooks, T]


@pytest.mark.parametrize("n_samples", [1, 1919, 1920, 1921, 5 * 1920, 24000, 37_000])
def test_frame_count_matches_n_frames(mimi, n_samples):
    audio = (0.1 * np.sin(np.arange(n_samples) * 0.05)).astype(np.float32)
    feats = mimi(audio, SR)
    assert feats.shape == (n_frames(n_samples / SR), 512)
    assert feats.dtype == np.float32 and np.all(np.isfinite(feats))


def test_standin_codes_are_not_collapsed(mimi, speech):
    codes = codes_of(mimi, speech[1])
    assert codes.shape[0] == 8
    distinct = [len(torch.unique(level)) for level in codes]
    assert min(distinct) >= 3, distinct
    feats = mimi(speech[1], SR)
    assert len(np.unique(feats.round(6), axis=0)) >= 3  # the representation varies over time too


def test_representation_is_sum_of_codebook_vectors(mimi, speech):
    """Recompute sum_k output_proj_k(codebook_k[code_k]) from the codebook tables, without decode_latent."""
    codes = codes_of(mimi, speech[0])
    q = mimi.model.quantizer
    levels = [(q.rvq_first, q.rvq_first.vq.layers[0])] + [(q.rvq_rest, layer) for layer in q.rvq_rest.vq.layers[:7]]
    expected = torch.zeros(512, codes.shape[1])
    for (rvq, layer), level_codes in zip(levels, codes):
        vectors = layer._codebook.embedding[level_codes].T  # [256, T]
        expected += rvq.output_proj.weight[:, :, 0] @ vectors  # 1x1 conv without bias
    np.testing.assert_allclose(mimi(speech[0], SR), expected.T.numpy(), atol=1e-5, rtol=0)


def test_batched_equals_one_at_a_time(mimi, speech):
    clips = [speech[0], np.zeros(1, np.float32), speech[1], speech[1][:1920 * 7], speech[0][:12_345]]
    single = [mimi(c, SR) for c in clips]
    mimi.batch_size = 2  # several batches, each padded to its longest clip
    try:
        batched = mimi.encode_batch(clips)
    finally:
        mimi.batch_size = 8
    for a, b in zip(single, batched):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_deterministic_and_picklable(mimi, speech):
    first = mimi(speech[0], SR)
    np.testing.assert_array_equal(first, mimi(speech[0], SR))
    clone = pickle.loads(pickle.dumps(mimi))
    assert repr(clone) == repr(mimi)
    np.testing.assert_array_equal(first, clone(speech[0], SR))


def test_repr_names_the_weights(mimi, checkpoint):
    r = repr(mimi)
    assert checkpoint.name in r and str(checkpoint.stat().st_size) in r and "num_codebooks=8" in r
    assert weights_digest(checkpoint) in r


def test_weights_digest_sees_content(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    data = bytearray(np.random.default_rng(0).bytes(3 << 20))
    a.write_bytes(data)
    data[len(data) // 2] ^= 1
    b.write_bytes(data)
    assert weights_digest(a) != weights_digest(b)


def test_missing_weights_names_the_download(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        MimiEncoder(tmp_path / "nope.safetensors")
    for needle in (MIMI_WEIGHTS_FILE, MIMI_HUB_REPO, "encode.mimi_weights", "nope.safetensors"):
        assert needle in str(e.value)


@pytest.mark.parametrize("audio, sample_rate, match", [
    (np.zeros(4800, np.float32), 16000, "sample rate 16000 Hz"),
    (np.zeros((2, 4800), np.float32), SR, "1-D"),
    (np.zeros(0, np.float32), SR, "empty"),
    (np.zeros(4800, np.int16), SR, "floating point"),
    (np.array([0.0, np.nan], np.float32), SR, "NaN"),
])
def test_bad_audio_is_rejected(mimi, audio, sample_rate, match):
    with pytest.raises(ValueError, match=match):
        mimi(audio, sample_rate)


def test_config_requires_weights_for_mimi():
    with pytest.raises(ConfigError, match=r"encode\.mimi_weights.*" + MIMI_WEIGHTS_FILE.replace(".", r"\.")):
        params_from_dict({"encode": {"encoder": "mimi"}})
    for bad in (0, 33):
        with pytest.raises(ConfigError, match="mimi_codebooks"):
            EncodeConfig(encoder="mimi", mimi_weights="w.safetensors", mimi_codebooks=bad)


def test_make_encoder_builds_mimi(checkpoint, speech):
    enc = make_encoder(EncodeConfig(encoder="mimi", mimi_weights=str(checkpoint), mimi_codebooks=2,
                                    mimi_batch_size=4))
    assert isinstance(enc, MimiEncoder) and enc.num_codebooks == 2 and enc.batch_size == 4
    assert enc.dim == 512 and "num_codebooks=2" in repr(enc)
    assert codes_of(enc, speech[0]).shape[0] == 2
