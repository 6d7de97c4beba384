"""A speech store to a feature store: frozen encoder features at 12.5 Hz, one array per document, cached on disk.

The feature store (salad.storage.store) sits beside its speech store: `index.jsonl` holds {id, n_frames, shard, offset,
length}, the shards hold float16 [frames, dim] (halving disk and page-cache use; the encoder's output range makes the
rounding error far below the features' own variation). Shards are encoded by `workers` processes (and torchrun ranks)
and a killed run resumes at the first unfinished shard. Audio the encoder rejects (e.g. a sample rate it does not
take) is an error naming the document: it means a wrong setup, not a bad document, so nothing is skipped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import salad.speech.encoders
import salad.speech.encoding
import salad.storage.store
from salad.speech.encoders import Encoder
from salad.storage.store import ShardedStore, build_store, code_digest, distributed_rank, fingerprint

__all__ = ["EncodingJob", "encode_corpus"]


class EncodingJob:
    """A speech store to features: a picklable `ShardJob` (the speech store is reopened in each worker)."""

    def __init__(self, encoder: Encoder, speech_dir: Path):
        self.encoder, self.speech_dir = encoder, Path(speech_dir)
        self.speech = ShardedStore(self.speech_dir)
        self._ids = self.speech.ids()

    def __len__(self) -> int:
        return len(self._ids)

    def doc_id(self, i: int) -> str:
        return self._ids[i]

    def run(self, i: int) -> tuple[dict, np.ndarray]:
        rec = self.speech.record(self._ids[i])
        pcm = np.asarray(self.speech.array(rec["id"]), dtype=np.float32) / 32768.0
        try:
            feats = self.encoder(pcm, rec["sample_rate"])
        except ValueError as e:  # a setup error, not a bad document: stop, naming the document
            raise RuntimeError(f"{self.speech_dir}: document {rec['id']!r}: {e}") from e
        return {"id": rec["id"], "n_frames": len(feats)}, feats.astype(np.float16)

    def __getstate__(self):
        return {"encoder": self.encoder, "speech_dir": self.speech_dir}

    def __setstate__(self, state):
        self.__init__(state["encoder"], state["speech_dir"])


def encode_corpus(encoder: Encoder, speech_dir: Path, out: Path, desc: str, *, workers: int = 1,
                  shard_docs: int = 256, rank: int | None = None, world_size: int | None = None) -> dict | None:
    """Encode the speech store `speech_dir` into the feature store `out`; returns its stats (None on a rank that is
    not the last to finish)."""
    if rank is None:
        rank, world_size = distributed_rank()
    job = EncodingJob(encoder, speech_dir)
    # the code that shapes the features: the shared checks and frame count, this job, the store, the encoder's module
    job_fp = fingerprint(repr(encoder), job.speech.digest(),
                         code_digest(salad.speech.encoders, salad.speech.encoding, salad.storage.store,
                                     backend=encoder))
    stats = build_store(job, out, job_fp, shard_docs=shard_docs, workers=workers, rank=rank,
                        world_size=world_size, desc=f"encode {desc}")
    if stats is not None:
        stats.update(frames=stats.pop("rows"), dim=encoder.dim)
    return stats
