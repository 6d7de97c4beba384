"""The `synthesize` stage: speech with word-level timestamps for every corpus that needs audio.

- speech: D_speech, the narrow "natural speech" side (book text) used for Stage I training. Natural corpora have
  many speakers and speaking rates, so each document is read by a voice and rate drawn with the seed from
  `synthesize.speech_voices` x `synthesize.speech_rates`;
- test: held-out broad-domain documents on which M and F are measured, in the one fixed voice;
- eval: the spoken contexts of the benchmark items evaluated in speech mode (demonstrations and question), in the
  fixed voice (the paper uses Kokoro af_heart for both its synthetic corpus and its benchmarks), one per distinct
  context text (salad.stages.evaluate.eval_contexts);
- eval_voice2: the same contexts in `evaluate.second_voice` (the speaker-generalisation test, paper Table 8); an
  empty store when that is null;
- broad: D_broad, the broad synthetic side of the analysis grid: `synthesize.broad_docs` documents of D_web (a
  seeded sample) in the fixed voice, as the paper synthesizes FineWeb-Edu in one voice. The text-only corpus of
  Stage I mixing is D_web too, so a broad document may also be seen as text alone (the paper's SmolLM text corpus
  likewise overlaps FineWeb-Edu). Not made when broad_docs is 0.

The fixed voice comes from `make_tts`: espeak-ng by default, Kokoro-82M (`synthesize.tts: kokoro`, local files, see
salad.speech.kokoro) for the paper's voice. D_speech's many voices stay espeak-ng voices in both cases: they stand for
the narrow natural side, whose point is variety of speakers and rates, which espeak's voice set provides offline.

Each corpus is a sharded store (salad.storage.store): `data/speech/<corpus>/index.jsonl` holds one record per document
{id, text, voice, rate, sample_rate, num_samples, words: [[word, char_start, char_end, start_s, end_s]], shard,
offset, length}, the shards hold int16 samples. Shards are built by `synthesize.workers` processes (and torchrun
ranks), and a killed run resumes at the first unfinished shard. A document the TTS rejects (no speakable word, no
Latin script, ...) is skipped and counted in `stats.json` with its reason.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import salad.storage.store
import salad.stages.synthesize
import salad.speech.tts
from salad.storage.atomic import read_jsonl, write_json
from salad.config import Params, SynthesizeConfig
from salad.storage.store import build_store, code_digest, distributed_rank, fingerprint
from salad.speech.tts import EspeakTTS
from salad.speech.kokoro import KokoroTTS
from salad.random_streams import stream

__all__ = ["SynthesisJob", "synthesize_corpus", "synthesize", "assign_voices", "broad_sample", "make_tts",
           "second_voice_tts"]


@dataclass
class SynthesisJob:
    """Documents ({id, text[, voice, rate]}) to speech: a picklable `ShardJob` for `salad.storage.store.build_store`.

    `tts` reads every document that names no voice; a document with "voice" and "rate" is read by the espeak-ng voice
    of that name and rate (created once per worker process).
    """

    tts: object
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
            self._voices[key] = EspeakTTS(voice=key[0], rate=key[1], sample_rate=self.tts.sample_rate)
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


def synthesize_corpus(tts, records: list[dict], out: Path, desc: str, *, workers: int = 1, shard_docs: int = 256,
                      rank: int | None = None, world_size: int | None = None) -> dict | None:
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
    job_fp = fingerprint(repr(tts), records, code_digest(salad.speech.tts, salad.stages.synthesize, salad.storage.store, backend=tts))
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


def make_tts(cfg: SynthesizeConfig) -> EspeakTTS | KokoroTTS:
    """The fixed-voice synthesizer of `cfg`: espeak-ng `voice` at `rate`, or Kokoro from its local files.

    D_speech's voices are not made here: they are espeak-ng voices whichever `cfg.tts` is (see the module docstring).
    """
    if cfg.tts == "kokoro":
        return KokoroTTS(model=cfg.kokoro_model, config=cfg.kokoro_config, voice=cfg.kokoro_voice,
                         spacy_model=cfg.kokoro_spacy_model, speed=cfg.kokoro_speed, sample_rate=cfg.sample_rate)
    return EspeakTTS(voice=cfg.voice, rate=cfg.rate, sample_rate=cfg.sample_rate)


def second_voice_tts(params: Params) -> EspeakTTS | KokoroTTS | None:
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


def synthesize(params: Params, prepared: Path, root: Path, out: Path) -> dict:
    from salad.stages.evaluate import VOICE2, eval_contexts

    cfg = params.synthesize
    tts = make_tts(cfg)
    # the second voice of the eval contexts (an unknown voice fails here, before any work); its store is always
    # written, empty when there is none, so that the evaluate stage can depend on it
    voices = {VOICE2: second_voice_tts(params)}
    contexts = eval_contexts(params, root)
    for voice in cfg.speech_voices:  # an unknown voice fails here, before any work
        EspeakTTS(voice=voice, rate=cfg.rate, sample_rate=cfg.sample_rate)
    corpora = {
        "speech": assign_voices(read_jsonl(prepared / "speech.jsonl"), cfg.speech_voices, cfg.speech_rates,
                                params.seed),
        "test": read_jsonl(prepared / "test.jsonl"),
        "eval": contexts,
        VOICE2: contexts if voices[VOICE2] is not None else [],
    }
    if cfg.broad_docs:
        corpora["broad"] = broad_sample(read_jsonl(prepared / "web.jsonl"), cfg.broad_docs, params.seed)
    elif (out / "broad").exists():  # a store of an earlier setting would be encoded and trained on: drop it
        shutil.rmtree(out / "broad")
    stats = {}
    for name, records in corpora.items():
        voice = voices.get(name)
        stats[name] = synthesize_corpus(tts if voice is None else voice, records, out / name, name,
                                        workers=cfg.workers, shard_docs=cfg.shard_docs)
    if any(s is None for s in stats.values()):
        return {"rank": distributed_rank()[0], "finished": "own shards; the last rank writes stats.json"}
    write_json(out / "stats.json", stats)
    return stats
