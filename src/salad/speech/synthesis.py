"""Documents to a speech store: text read by a synthesizer, with word-level timestamps, cached on disk.

A speech store is a sharded store (salad.storage.store): `index.jsonl` holds one record per document {id, text, voice,
rate, sample_rate, num_samples, words: [[word, char_start, char_end, start_s, end_s]], shard, offset, length}, the
shards hold int16 samples. Shards are built by `workers` processes (and torchrun ranks), and a killed run resumes at
the first unfinished shard. A document the synthesizer rejects (no speakable word, no Latin script, ...) is skipped
and counted in the stats with its reason.

Synthesizers (`SYNTHESIZERS`, chosen by `synthesize.tts`): espeak-ng (salad.speech.tts, the default) or Kokoro-82M
(salad.speech.kokoro, local files, the paper's voice). Both give a `Speech` (float audio at `sample_rate`, one
`WordTime` per speakable word); `repr` names everything that shapes the audio, for the store's fingerprint, and the
module that defines the class is hashed into it too (`code_digest(..., backend=tts)`). Adding one is a module with a
class that has `from_config(cfg: SynthesizeConfig)`, and one line of `SYNTHESIZERS`.

D_speech's many voices (`assign_voices`) are espeak-ng voices whichever synthesizer reads the fixed voice: they stand
for the narrow natural side, whose point is variety of speakers and rates, which espeak's voice set provides offline.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

import salad.speech.synthesis
import salad.speech.tts
import salad.storage.store
from salad.config import Params, SynthesizeConfig
from salad.random_streams import stream
from salad.speech.tts import EspeakTTS, Speech
from salad.storage.store import CannotBuild, build_store, code_digest, distributed_rank, fingerprint

__all__ = ["Synthesizer", "SYNTHESIZERS", "make_tts", "second_voice_tts", "SynthesisJob", "synthesize_corpus",
           "assign_voices", "broad_sample"]


class Synthesizer(Protocol):
    """Text to speech with word times (see the module docstring)."""

    sample_rate: int

    def synthesize(self, text: str) -> Speech: ...

    def __repr__(self) -> str:
        """Everything that shapes the audio and word times, for the speech store's fingerprint."""
        ...


SYNTHESIZERS: dict[str, str] = {
    "espeak": "salad.speech.tts:EspeakTTS",
    "kokoro": "salad.speech.kokoro:KokoroTTS",  # imported only when configured (it loads torch and Kokoro's model)
}
"""`synthesize.tts` name → "module:class" of its synthesizer."""


def make_tts(cfg: SynthesizeConfig) -> Synthesizer:
    """The fixed-voice synthesizer of `cfg`: espeak-ng `voice` at `rate`, or Kokoro from its local files.

    D_speech's voices are not made here: they are espeak-ng voices whichever `cfg.tts` is (see the module docstring).
    """
    if cfg.tts not in SYNTHESIZERS:
        raise ValueError(f"unknown synthesizer {cfg.tts!r}; known: {sorted(SYNTHESIZERS)}")
    module, name = SYNTHESIZERS[cfg.tts].split(":")
    return getattr(importlib.import_module(module), name).from_config(cfg)


def second_voice_tts(params: Params) -> Synthesizer | None:
    """The synthesizer of `evaluate.second_voice` (paper Table 8): a Kokoro voice file (*.pt) read with the
    synthesize.kokoro_* model, or an espeak-ng voice name at `synthesize.rate`; None when it is null."""
    voice, cfg = params.evaluate.second_voice, params.synthesize
    if voice is None:
        return None
    if voice.endswith(".pt"):
        if not (cfg.kokoro_model and cfg.kokoro_config):
            raise ValueError(f"evaluate.second_voice {voice!r} is a Kokoro voice file, but synthesize.kokoro_model "
                             f"and synthesize.kokoro_config (the local Kokoro-82M files) are not set")
        return make_tts(dataclasses.replace(cfg, tts="kokoro", kokoro_voice=voice))
    return EspeakTTS(voice=voice, rate=cfg.rate, sample_rate=cfg.sample_rate)


@dataclass
class SynthesisJob:
    """Documents ({id, text[, voice, rate]}) to speech: a picklable `ShardJob` for `salad.storage.store.build_store`.

    `tts` reads every document that names no voice; a document with "voice" and "rate" is read by the espeak-ng voice
    of that name and rate (created once per worker process).
    """

    tts: Synthesizer
    records: list[dict]
    _voices: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    def doc_id(self, i: int) -> str:
        return self.records[i]["id"]

    def _tts_for(self, rec: dict):
        if "voice" not in rec:
            return self.tts
        key = (rec["voice"], int(rec["rate"]))
        if key not in self._voices:
            try:  # a voice that cannot be built is an error of the stage, never a skip of this document
                self._voices[key] = EspeakTTS(voice=key[0], rate=key[1], sample_rate=self.tts.sample_rate)
            except Exception as e:
                raise CannotBuild(f"espeak-ng voice {key[0]!r} at {key[1]} wpm cannot be built: {e}") from e
        return self._voices[key]

    def run(self, i: int) -> tuple[dict, np.ndarray]:
        rec = self.records[i]
        tts = self._tts_for(rec)
        speech = tts.synthesize(rec["text"])
        if not np.any(speech.audio):
            raise ValueError("the synthesizer produced only silence")
        pcm = np.clip(np.round(speech.audio * 32767.0), -32768, 32767).astype(np.int16)
        record = {
            "id": rec["id"], "text": rec["text"], "voice": getattr(tts, "voice", None), "rate": getattr(tts, "rate", None),
            "sample_rate": speech.sample_rate, "num_samples": len(pcm),
            "words": [[w.word, w.char_start, w.char_end, round(w.start, 4), round(w.end, 4)] for w in speech.words],
        }
        return record, pcm

    def __getstate__(self):  # voices are rebuilt in each worker; their library state is per process
        return {"tts": self.tts, "records": self.records, "_voices": {}}


def synthesize_corpus(tts: Synthesizer, records: list[dict], out: Path, desc: str, *, workers: int = 1,
                      shard_docs: int = 256, rank: int | None = None, world_size: int | None = None) -> dict | None:
    """Synthesize `records` ({id, text}) into the store `out`; returns its stats (None on a rank that is not last).

    A record the TTS rejects is skipped and listed with its reason in the stats; every other error stops the stage
    after the shards already finished are committed.
    """
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{desc}: document id {dup!r} appears more than once")
    if rank is None:
        rank, world_size = distributed_rank()
    job = SynthesisJob(tts=tts, records=records)
    # the code that shapes the audio: espeak-ng (D_speech's voices), this job, the store, the fixed voice's module
    job_fp = fingerprint(repr(tts), records, code_digest(salad.speech.tts, salad.speech.synthesis, salad.storage.store,
                                                         backend=tts))
    stats = build_store(job, out, job_fp, shard_docs=shard_docs, workers=workers, rank=rank,
                        world_size=world_size, desc=f"synthesize {desc}")
    if stats is not None:
        store = salad.storage.store.ShardedStore(out)
        samples = sum(r["num_samples"] for r in store.records)
        stats.update(hours=round(samples / tts.sample_rate / 3600, 4),
                     words=sum(len(r["words"]) for r in store.records))
    return stats


def assign_voices(records: list[dict], voices: tuple[str, ...], rates: tuple[int, ...], seed: int) -> list[dict]:
    """Give each document a (voice, rate) drawn uniformly and independently with `seed` (stable per document id)."""
    out = []
    for rec in records:
        rng = np.random.default_rng([seed, int(fingerprint(rec["id"])[:12], 16)])
        out.append({**rec, "voice": voices[int(rng.integers(len(voices)))],
                    "rate": int(rates[int(rng.integers(len(rates)))])})
    return out


def broad_sample(web: list[dict], n: int, seed: int) -> list[dict]:
    """`n` documents of D_web drawn without replacement with `seed`, kept in their D_web order."""
    if n > len(web):
        raise ValueError(f"synthesize.broad_docs is {n} but D_web (web.jsonl) has only {len(web)} documents")
    chosen = np.sort(stream(seed, "broad-sample").choice(len(web), size=n, replace=False))
    return [{"id": web[i]["id"], "text": web[i]["text"]} for i in chosen]
