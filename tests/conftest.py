"""Shared fixtures: a tiny tokenizer trained as the teacher's is, and synthetic aligned documents."""

import math
import re

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from salad.data.tokens import tokenize
from salad.data.interleave import AlignedDoc, map_tokens_to_words
from salad.model.teacher import train_tokenizer
from salad.speech.encoders import FRAME_RATE

TEXT = ("The quick brown fox, which can't sleep, jumps over 13 lazy dogs. Meanwhile the old farmer's wife "
        "counts 2,500 eggs and sells them at the market for three dollars each! ") * 4


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer([TEXT] * 3, 300)


def make_doc(tokenizer, text=TEXT, seed=0, frames_dim=3):
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    rng = np.random.default_rng(seed)
    t, times = 0.1, []
    for _ in words:
        d = rng.uniform(0.1, 0.6)
        times.append((t, t + d))
        t += d + rng.uniform(0.0, 0.2)
    n_frames = math.ceil(t * FRAME_RATE)
    features = np.arange(n_frames * frames_dim, dtype=np.float32).reshape(n_frames, frames_dim)
    ids, offsets = tokenize(tokenizer, text)
    token_word = np.concatenate([[-1], map_tokens_to_words(offsets, text, words)])
    return AlignedDoc("doc", ids, token_word, np.array(times), features), words




@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, tokenizer):
    """A tiny random Qwen2 teacher with the tokenizer, saved as Qwen2.5 would be (from_pretrained loads it)."""
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True)
    path = tmp_path_factory.mktemp("teacher")
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# Sentences with numbers, symbols and punctuation: the property tests of every TTS backend read them.
SENTENCES = [
    "The committee met on Tuesday to review the budget for 2024.",
    "Nobody expected the proposal to pass, yet it did by a narrow margin of 5 to 4.",
    "Afterwards, the chair thanked everyone & closed the session at 6:15 p.m.",
    "Rain fell steadily over the valley while the river rose about 3.5 feet.",
    "Is this the end of the story? Not quite; there is more to tell.",
    "She wrote: \"The results are clear — the method works in 87% of cases.\"",
]


def speakable_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words a TTS must time: whitespace-separated, with a letter or digit."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text) if any(ch.isalnum() for ch in m.group())]


def check_speech(text: str, speech, sample_rate: int = 24000) -> None:
    """The word contract of every TTS backend: one span per speakable word, its exact characters, ordered,
    non-overlapping and inside non-silent audio in [-1, 1]."""
    assert isinstance(speech.audio, np.ndarray) and speech.audio.dtype == np.float32 and speech.audio.ndim == 1
    assert speech.sample_rate == sample_rate
    assert len(speech.audio) > 0 and np.all(np.abs(speech.audio) <= 1.0) and np.any(speech.audio)
    assert speech.duration == pytest.approx(len(speech.audio) / sample_rate)
    assert [(w.char_start, w.char_end) for w in speech.words] == speakable_spans(text)
    previous_end = 0.0
    for w in speech.words:
        assert text[w.char_start:w.char_end] == w.word
        assert 0.0 <= previous_end <= w.start < w.end <= speech.duration, w
        previous_end = w.end


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """prepare → teacher → synthesize → phones → encode on params/ci.yaml, in a temporary directory (slow tests only).

    `root/project` stands for the project root the stages read benchmark files under: data/raw is the repository's,
    data/prepared the one made here (MMSU and the family are read from it)."""
    from pathlib import Path

    from salad.config import load_params
    from salad.stages.encode import encode
    from salad.stages.phones import train_phones
    from salad.stages.prepare import prepare
    from salad.stages.synthesize import synthesize
    from salad.stages.teacher import train_teacher

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path_factory.mktemp("world")
    params = load_params(repo / "params" / "ci.yaml")
    prepare(params, repo / "data" / "raw", root / "prepared")
    (root / "project" / "data").mkdir(parents=True)
    (root / "project" / "data" / "raw").symlink_to(repo / "data" / "raw")
    (root / "project" / "data" / "prepared").symlink_to(root / "prepared")
    train_teacher(params, root / "prepared", root / "teacher", root / "live_teacher", root / "teacher.json")
    synthesize(params, root / "prepared", root / "project", root / "speech")
    train_phones(params, root / "prepared", root / "phones", root / "live_phones", root / "phones.json")
    encode(params.encode, root / "speech", root / "phones", root / "features")
    return root, params


@pytest.fixture(scope="session")
def stage1(world):
    """Stage I trained on the ci world (with its pre_decay.pt): the model Stage II resumes from."""
    from salad.stages.train import train

    root, params = world
    out = root / "stage1"
    train(params, root / "teacher", root / "prepared", root / "speech", root / "features", out, root / "live_stage1",
          root / "stage1.json", root / "ckpt_stage1")
    return out
