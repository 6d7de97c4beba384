"""Reading the stage outputs back as documents: prepared text, synthesized speech with word times, and features.

Training reads two kinds: speech documents (`load_aligned`: tokens mapped to words, words to times, and features)
and the text-only documents of its text batches (`TextDocs` of `text_mix_file`).

On-disk layout (written by `synthesize` and `encode`, read here):

    data/speech/<corpus>/      a salad.storage.store: index.jsonl {id, text, voice, rate, sample_rate, num_samples,
                               words: [[word, c0, c1, t0, t1]], shard, offset, length}; shards of int16 samples
    data/features/<corpus>/    a salad.storage.store: index.jsonl {id, n_frames, shard, offset, length}; shards of
                               float16 [frames, dim], read memory-mapped
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salad.config import Params
from salad.data.interleave import AlignedDoc, map_tokens_to_words
from salad.data.tokens import tokenize
from salad.storage.atomic import read_jsonl
from salad.storage.store import ShardedStore

def load_speech_index(speech_dir: str | Path) -> list[dict]:
    return ShardedStore(speech_dir).records


def speech_store(speech_dir: str | Path) -> ShardedStore:
    """Synthesized or natural speech by document id: `.record(id)` (text, words, ...), `.array(id)` int16 samples."""
    return ShardedStore(speech_dir)


class FeatureReader:
    """Encoder features of a corpus by document id: `reader[id]` is a float16 [n_frames, dim] view (memory-mapped).

    The stable way to read features; the on-disk layout behind it is salad.storage.store's.
    """

    def __init__(self, features_dir: str | Path):
        self.dir = Path(features_dir)
        self._store = ShardedStore(self.dir)

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._store

    def ids(self) -> list[str]:
        return self._store.ids()

    def __getitem__(self, doc_id: str) -> np.ndarray:
        if doc_id not in self._store:
            raise KeyError(f"{self.dir}: no features for document {doc_id!r}")
        return self._store.array(doc_id)


def load_aligned(speech_dir: str | Path, features_dir: str | Path, tokenizer) -> list[AlignedDoc]:
    """Documents with tokens mapped to words, words to times, and their encoder features (as float32)."""
    speech = load_speech_index(speech_dir)
    features = FeatureReader(features_dir)
    docs = []
    for rec in speech:
        if rec["id"] not in features:
            raise ValueError(f"{features_dir}: no features for document {rec['id']!r}; rerun `salad encode`")
        ids, offsets = tokenize(tokenizer, rec["text"])
        words = rec["words"]
        token_word = map_tokens_to_words(offsets, rec["text"], [(w[1], w[2]) for w in words])
        docs.append(AlignedDoc(
            id=rec["id"],
            token_ids=ids,
            token_word=np.concatenate([[-1], token_word]),
            word_times=np.array([[w[3], w[4]] for w in words], dtype=np.float64),
            features=np.asarray(features[rec["id"]], dtype=np.float32),
        ))
    return docs


class TextDocs:
    """Text-only documents of a prepared jsonl, tokenized on first use (a run touches only the documents it draws)."""

    def __init__(self, path: Path, tokenizer, max_len: int):
        self.texts = [r["text"] for r in read_jsonl(path)]
        self.tokenizer, self.max_len, self.cache = tokenizer, max_len, {}

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> AlignedDoc:
        if i not in self.cache:
            ids = tokenize(self.tokenizer, self.texts[i])[0][:self.max_len]
            self.cache[i] = AlignedDoc(id=str(i), token_ids=ids, token_word=np.zeros(len(ids), np.int64),
                                       word_times=np.zeros((0, 2)), features=None)
        return self.cache[i]


def text_mix_file(params: Params, prepared: Path) -> Path:
    """The corpus of the text-only batches: D_web, or the fetched text-mixing corpus (paper: SmolLM) when
    prepare.text_mix_corpus is set."""
    return prepared / ("text_mix.jsonl" if params.prepare.text_mix_corpus else "web.jsonl")
