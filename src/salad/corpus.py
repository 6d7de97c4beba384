"""Reading the stage outputs back as documents: prepared text, synthesized speech with word times, and features.

On-disk layout (written by `synthesize` and `encode`, read here):

    data/speech/<corpus>/index.jsonl    {id, text, offset, num_samples, sample_rate, words: [[word, c0, c1, t0, t1]]}
    data/speech/<corpus>/audio.npy      int16 [total samples], all documents concatenated (memory-mapped)
    data/features/<corpus>/index.jsonl  {id, offset, n_frames}
    data/features/<corpus>/features.npy float16 [total frames, dim] (memory-mapped)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salad.atomic import read_jsonl
from salad.interleave import AlignedDoc, map_tokens_to_words

DOC_START = "<|endoftext|>"
"""Document-start token prepended to every text sequence w (Qwen2.5 uses the same string as document separator)."""


def doc_start_id(tokenizer) -> int:
    token_id = tokenizer.convert_tokens_to_ids(DOC_START)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer has no {DOC_START!r} token; it is needed as the document-start token")
    return int(token_id)


def tokenize(tokenizer, text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """w = [document start] + tokens of text, and each text token's character offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.array([doc_start_id(tokenizer)] + list(enc["input_ids"]), dtype=np.int64)
    return ids, [tuple(o) for o in enc["offset_mapping"]]


def load_speech_index(speech_dir: str | Path) -> list[dict]:
    return read_jsonl(Path(speech_dir) / "index.jsonl")


def load_audio(speech_dir: str | Path) -> np.ndarray:
    return np.load(Path(speech_dir) / "audio.npy", mmap_mode="r")


def load_features(features_dir: str | Path) -> tuple[list[dict], np.ndarray]:
    features_dir = Path(features_dir)
    return read_jsonl(features_dir / "index.jsonl"), np.load(features_dir / "features.npy", mmap_mode="r")


class FeatureReader:
    """Encoder features of a corpus by document id: `reader[id]` is a float16 [n_frames, dim] view (memory-mapped).

    The stable way to read features; the on-disk layout behind it may change.
    """

    def __init__(self, features_dir: str | Path):
        self.dir = Path(features_dir)
        index, self._array = load_features(self.dir)
        self._where = {r["id"]: (r["offset"], r["n_frames"]) for r in index}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._where

    def ids(self) -> list[str]:
        return list(self._where)

    def __getitem__(self, doc_id: str) -> np.ndarray:
        if doc_id not in self._where:
            raise KeyError(f"{self.dir}: no features for document {doc_id!r}")
        offset, n = self._where[doc_id]
        return self._array[offset:offset + n]


def load_aligned(speech_dir: str | Path, features_dir: str | Path, tokenizer) -> list[AlignedDoc]:
    """Documents with tokens mapped to words, words to times, and their encoder features (as float32)."""
    speech = load_speech_index(speech_dir)
    feat_index, feats = load_features(features_dir)
    by_id = {r["id"]: r for r in feat_index}
    docs = []
    for rec in speech:
        if rec["id"] not in by_id:
            raise ValueError(f"{features_dir}: no features for document {rec['id']!r}; rerun `salad encode`")
        f = by_id[rec["id"]]
        ids, offsets = tokenize(tokenizer, rec["text"])
        words = rec["words"]
        token_word = map_tokens_to_words(offsets, rec["text"], [(w[1], w[2]) for w in words])
        docs.append(AlignedDoc(
            id=rec["id"],
            token_ids=ids,
            token_word=np.concatenate([[-1], token_word]),
            word_times=np.array([[w[3], w[4]] for w in words], dtype=np.float64),
            features=np.asarray(feats[f["offset"]:f["offset"] + f["n_frames"]], dtype=np.float32),
        ))
    return docs
