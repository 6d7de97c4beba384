"""The `synthesize` stage: speech with word-level timestamps for every corpus that needs audio.

- speech: D_speech, the narrow "natural speech" side (book text) used for Stage I training;
- test: held-out broad-domain documents on which M and F are measured;
- eval: the spoken contexts of the benchmark items evaluated in speech mode (demonstrations and question).

One fixed voice for all, as the paper uses Kokoro af_heart for both its synthetic corpus and its benchmarks.
Output per corpus: `index.jsonl` (text, sample offsets, words with character spans and times) and `audio.npy`
(int16, all documents concatenated, so readers can memory-map it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from salad.atomic import read_jsonl, save_npy, write_json, write_jsonl
from salad.config import Params
from salad.tts import EspeakTTS


def synthesize_corpus(tts: EspeakTTS, records: list[dict], out: Path, desc: str) -> dict:
    """Synthesize `records` ({id, text}) into `out`; a record the TTS rejects is an error naming it."""
    index, chunks, offset = [], [], 0
    for rec in tqdm(records, desc=f"synthesize {desc}", unit="doc", mininterval=5):
        try:
            speech = tts.synthesize(rec["text"])
        except ValueError as e:
            raise ValueError(f"{desc}: document {rec['id']!r}: {e}") from e
        pcm = np.clip(np.round(speech.audio * 32767.0), -32768, 32767).astype(np.int16)
        chunks.append(pcm)
        index.append({
            "id": rec["id"], "text": rec["text"], "offset": offset, "num_samples": len(pcm),
            "sample_rate": speech.sample_rate,
            "words": [[w.word, w.char_start, w.char_end, round(w.start, 4), round(w.end, 4)] for w in speech.words],
        })
        offset += len(pcm)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    save_npy(out / "audio.npy", audio)
    write_jsonl(out / "index.jsonl", index)
    return {"documents": len(index), "hours": round(offset / tts.sample_rate / 3600, 4),
            "words": sum(len(r["words"]) for r in index)}


def synthesize(params: Params, prepared: Path, root: Path, out: Path) -> dict:
    from salad.evaluate import eval_contexts

    cfg = params.synthesize
    tts = EspeakTTS(voice=cfg.voice, rate=cfg.rate, sample_rate=cfg.sample_rate)
    stats = {
        "speech": synthesize_corpus(tts, read_jsonl(prepared / "speech.jsonl"), out / "speech", "speech"),
        "test": synthesize_corpus(tts, read_jsonl(prepared / "test.jsonl"), out / "test", "test"),
        "eval": synthesize_corpus(tts, eval_contexts(params, root), out / "eval", "eval"),
    }
    write_json(out / "stats.json", stats)
    return stats
