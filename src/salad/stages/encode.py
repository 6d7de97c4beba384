"""The `encode` stage: frozen speech-encoder features at 12.5 Hz for every synthesized corpus, cached on disk.

Each corpus is a sharded store (salad.storage.store) beside its speech store: `data/features/<corpus>/index.jsonl` holds
{id, n_frames, shard, offset, length}, the shards hold float16 [frames, dim] (halving disk and page-cache use; the
encoder's output range makes the rounding error far below the features' own variation). Shards are encoded by
`encode.workers` processes (and torchrun ranks) and a killed run resumes at the first unfinished shard. Audio the
encoder rejects (e.g. a sample rate it does not take) is an error naming the document: it means a wrong setup, not
a bad document, so nothing is skipped silently.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import salad.stages.encode
import salad.speech.encoders.logmel
import salad.storage.store
from salad.storage.atomic import write_json
from salad.config import EncodeConfig
from salad.speech.encoders.logmel import LogMelEncoder
from salad.storage.store import ShardedStore, build_store, code_digest, distributed_rank, fingerprint

__all__ = ["make_encoder", "EncodingJob", "encode_corpus", "encode"]


def make_encoder(cfg: EncodeConfig):
    """The frozen encoder `cfg` names; Mimi is imported only when configured (it pulls in moshi and its weights)."""
    if cfg.encoder == "logmel":
        return LogMelEncoder(n_mels=cfg.n_mels)
    if cfg.encoder == "mimi":
        from salad.speech.encoders.mimi import MimiEncoder

        return MimiEncoder(cfg.mimi_weights, num_codebooks=cfg.mimi_codebooks, batch_size=cfg.mimi_batch_size)
    raise ValueError(f"unknown encoder {cfg.encoder!r}")


class EncodingJob:
    """A speech store to features: a picklable `ShardJob` (the speech store is reopened in each worker)."""

    def __init__(self, encoder, speech_dir: Path):
        self.encoder, self.speech_dir = encoder, Path(speech_dir)
        self._speech = ShardedStore(self.speech_dir)
        self._ids = self._speech.ids()

    def __len__(self) -> int:
        return len(self._ids)

    def doc_id(self, i: int) -> str:
        return self._ids[i]

    def run(self, i: int) -> tuple[dict, np.ndarray]:
        rec = self._speech.record(self._ids[i])
        pcm = np.asarray(self._speech.array(rec["id"]), dtype=np.float32) / 32768.0
        try:
            feats = self.encoder(pcm, rec["sample_rate"])
        except ValueError as e:  # a setup error, not a bad document: stop, naming the document
            raise RuntimeError(f"{self.speech_dir}: document {rec['id']!r}: {e}") from e
        return {"id": rec["id"], "n_frames": len(feats)}, feats.astype(np.float16)

    def __getstate__(self):
        return {"encoder": self.encoder, "speech_dir": self.speech_dir}

    def __setstate__(self, state):
        self.__init__(state["encoder"], state["speech_dir"])


def encode_corpus(encoder, speech_dir: Path, out: Path, desc: str, *, workers: int = 1, shard_docs: int = 256,
                  rank: int | None = None, world_size: int | None = None) -> dict | None:
    """Encode the speech store `speech_dir` into the feature store `out`; returns its stats (None on a rank that is
    not the last to finish)."""
    if rank is None:
        rank, world_size = distributed_rank()
    job = EncodingJob(encoder, speech_dir)
    job_fp = fingerprint(repr(encoder), job._speech.digest(),
                         code_digest(salad.speech.encoders.logmel, salad.stages.encode, salad.storage.store, backend=encoder))
    stats = build_store(job, out, job_fp, shard_docs=shard_docs, workers=workers, rank=rank,
                        world_size=world_size, desc=f"encode {desc}")
    if stats is not None:
        stats.update(frames=stats.pop("rows"), dim=encoder.dim)
    return stats


SYNTHESIZED = ("speech", "test", "eval")
"""The corpora every pipeline synthesizes; `broad` (the grid's synthetic side) and `eval_voice2` (the eval contexts
in the second voice) are encoded when they were made."""
OPTIONAL = ("broad", "eval_voice2")


def encode(cfg: EncodeConfig, speech: Path, out: Path, natural: Path | None = None) -> dict:
    """Encode the synthesized corpora under `speech` (speech, test, eval, and broad and eval_voice2 when present)
    and, when given, the natural speech store."""
    encoder = make_encoder(cfg)
    corpora = {name: Path(speech) / name for name in SYNTHESIZED}
    for name in OPTIONAL:
        if (Path(speech) / name / "index.jsonl").exists():
            corpora[name] = Path(speech) / name
        elif (Path(out) / name).exists():  # features of a corpus that is no longer synthesized
            shutil.rmtree(Path(out) / name)
    if natural is not None:
        corpora["natural"] = Path(natural)
    stats = {name: encode_corpus(encoder, src, out / name, name, workers=cfg.workers, shard_docs=cfg.shard_docs)
             for name, src in corpora.items()}
    if any(s is None for s in stats.values()):
        return {"rank": distributed_rank()[0], "finished": "own shards; the last rank writes stats.json"}
    write_json(out / "stats.json", stats)
    return stats
