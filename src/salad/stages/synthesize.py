"""The `synthesize` stage: speech with word-level timestamps for every corpus that needs audio.

- speech: D_speech, the narrow "natural speech" side (book text) used for Stage I training. Natural corpora have
  many speakers and speaking rates, so each document is read by a voice and rate drawn with the seed from
  `synthesize.speech_voices` x `synthesize.speech_rates`;
- test: held-out broad-domain documents on which M and F are measured, in the one fixed voice;
- eval: the spoken contexts of the benchmark items evaluated in speech mode (demonstrations and question), in the
  fixed voice (the paper uses Kokoro af_heart for both its synthetic corpus and its benchmarks), one per distinct
  context text (salad.evaluation.benchmarks.eval_contexts);
- eval_voice2: the same contexts in `evaluate.second_voice` (the speaker-generalisation test, paper Table 8); an
  empty store when that is null;
- broad: D_broad, the broad synthetic side of the analysis grid: `synthesize.broad_docs` documents of D_web (a
  seeded sample) in the fixed voice, as the paper synthesizes FineWeb-Edu in one voice. The text-only corpus of
  Stage I mixing is D_web too, so a broad document may also be seen as text alone (the paper's SmolLM text corpus
  likewise overlaps FineWeb-Edu). Not made when broad_docs is 0.

The fixed voice comes from `make_tts`: espeak-ng by default, Kokoro-82M (`synthesize.tts: kokoro`, local files, see
salad.speech.kokoro) for the paper's voice. D_speech's many voices stay espeak-ng voices in both cases
(salad.speech.synthesis says why).

Each corpus is a speech store `data/speech/<corpus>/` (its format: salad.speech.synthesis), built by
`synthesize.workers` processes (and torchrun ranks); a killed run resumes at the first unfinished shard. A document the
TTS rejects (no speakable word, no Latin script, ...) is skipped and counted in `stats.json` with its reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from salad.config import Params
from salad.speech.synthesis import assign_voices, broad_sample, make_tts, second_voice_tts, synthesize_corpus
from salad.speech.tts import EspeakTTS
from salad.storage.atomic import read_jsonl, write_json
from salad.storage.store import check_skips, content_stats, distributed_rank

__all__ = ["synthesize"]


def synthesize(params: Params, prepared: Path, root: Path, out: Path) -> dict:
    from salad.evaluation.benchmarks import VOICE2, eval_contexts

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
    write_json(out / "stats.json", content_stats(stats))  # the counts stay readable when the check below fails
    for name, corpus_stats in stats.items():
        check_skips(corpus_stats, cfg.max_skip_fraction, f"synthesize {name}")
    return stats
