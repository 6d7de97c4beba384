"""Speech front-end speed on this machine: seconds of audio produced or encoded per wall second (issue 3).

Targets (2 cores): espeak-ng synthesis with word timestamps >= 200x real time; weight-free features >= 100x.
Each measured path is timed against a naive baseline in the same run, on the same real text (book chunks of the
shipped Gutenberg sample, as in D_speech):

- espeak-ng: one library call per document with word events (salad.speech.tts) against the naive way to get word times
  without events: one call per word, concatenated (what a per-word TTS loop costs);
- log-mel: the vectorised encoder against a per-20-ms-frame Python loop computing the same features;
- the sharded stages: `workers=2` processes against `workers=1` on the same documents (synthesis and encoding);
- optional (--mimi, --kokoro): the Mimi encoder through moshi's loader and the Kokoro TTS, on random-weight stand-ins
  of the real architectures (the real Mimi is the same network; the Kokoro stand-in is smaller than the real one).

    python benchmarks/frontend_speed.py --docs 40 [--mimi] [--kokoro]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from salad.speech.encoding import encode_corpus
from salad.speech.encoders.logmel import STACK, LogMelEncoder
from salad.speech.synthesis import synthesize_corpus
from salad.speech.tts import EspeakTTS

ROOT = Path(__file__).resolve().parents[1]


def book_chunks(n: int, words: int = 100) -> list[str]:
    with gzip.open(ROOT / "data/raw/text/gutenberg_books.jsonl.gz", "rt", encoding="utf-8") as f:
        text = json.loads(f.readline())["text"]
    tokens = text.split()[2000:]  # past the front matter
    return [" ".join(tokens[i * words:(i + 1) * words]) for i in range(n)]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def naive_logmel(enc: LogMelEncoder, audio: np.ndarray) -> np.ndarray:
    """The same features, one 20 ms window at a time."""
    n_out = -(-len(audio) // (STACK * enc.hop))
    padded = np.zeros((n_out * STACK - 1) * enc.hop + enc.win_length, dtype=np.float32)
    take = min(len(audio), len(padded) - enc.pad_left)
    padded[enc.pad_left:enc.pad_left + take] = audio[:take]
    rows = []
    for j in range(n_out * STACK):
        frame = padded[j * enc.hop:j * enc.hop + enc.win_length] * enc.window
        spec = np.fft.rfft(frame, n=enc.n_fft)
        mel = (np.abs(spec) ** 2).astype(np.float32) @ enc.filters
        rows.append((np.log(mel + 1e-6) + 8.0) / 4.0)
    return np.stack(rows).reshape(n_out, enc.dim)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=40, help="book chunks of 100 words")
    p.add_argument("--mimi", action="store_true", help="also time Mimi (builds a 385 MB random checkpoint)")
    p.add_argument("--kokoro", action="store_true", help="also time Kokoro on a tiny random stand-in")
    args = p.parse_args()
    texts = book_chunks(args.docs)
    tts = EspeakTTS()
    results = {}

    speeches, t_events = timed(lambda: [tts.synthesize(t) for t in texts])
    audio_s = sum(s.duration for s in speeches)
    _, t_words = timed(lambda: [tts.synthesize(w) for t in texts[:max(1, args.docs // 4)] for w in t.split()
                                if any(c.isalnum() for c in w)])
    words_share = max(1, args.docs // 4) / args.docs
    results["espeak_with_word_times"] = {
        "audio_s": round(audio_s, 1), "wall_s": round(t_events, 2), "x_real_time": round(audio_s / t_events, 1),
        "naive_per_word_x_real_time": round(audio_s * words_share / t_words, 1),
        "speedup_vs_naive": round((t_words / words_share) / t_events, 2)}

    enc = LogMelEncoder()
    feats, t_vec = timed(lambda: [enc(s.audio, s.sample_rate) for s in speeches])
    few = speeches[:max(1, args.docs // 8)]
    naive, t_naive = timed(lambda: [naive_logmel(enc, s.audio) for s in few])
    few_s = sum(s.duration for s in few)
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(feats, naive))
    results["logmel"] = {"x_real_time": round(audio_s / t_vec, 1), "naive_loop_x_real_time": round(few_s / t_naive, 1),
                         "speedup_vs_naive": round((t_naive / few_s) / (t_vec / audio_s), 2),
                         "max_abs_diff_vs_naive": max_diff}

    with tempfile.TemporaryDirectory() as tmp:
        records = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
        shard = max(1, args.docs // 4)
        for workers in (1, 2):
            _, t_syn = timed(synthesize_corpus, tts, records, Path(tmp) / f"s{workers}", "bench", workers=workers,
                             shard_docs=shard, rank=0, world_size=1)
            stats, t_enc = timed(lambda: encode_corpus(enc, Path(tmp) / f"s{workers}", Path(tmp) / f"f{workers}",
                                                        "bench", workers=workers, shard_docs=shard, rank=0,
                                                        world_size=1))
            results[f"stage_workers_{workers}"] = {"synthesize_x_real_time": round(audio_s / t_syn, 1),
                                                   "encode_x_real_time": round(audio_s / t_enc, 1)}
        for key in ("synthesize_x_real_time", "encode_x_real_time"):
            results[f"stage_{key.split('_')[0]}_speedup_2_workers"] = round(
                results["stage_workers_2"][key] / results["stage_workers_1"][key], 2)

        if args.mimi:
            from salad.speech.encoders.mimi import MimiEncoder
            from salad.scale.mimi_standin import build_random_mimi_checkpoint

            ckpt = build_random_mimi_checkpoint(Path(tmp) / "mimi.safetensors")
            mimi = MimiEncoder(ckpt)
            sub = speeches[:max(1, args.docs // 4)]
            sub_s = sum(s.duration for s in sub)
            _, t_one = timed(lambda: [mimi(s.audio, s.sample_rate) for s in sub])
            _, t_batch = timed(lambda: mimi.encode_batch([s.audio for s in sub]))
            results["mimi_random_weights"] = {"x_real_time": round(sub_s / t_one, 1),
                                              "batched_x_real_time": round(sub_s / t_batch, 1)}
        if args.kokoro:
            from salad.scale.kokoro_standin import build_kokoro_standin
            from salad.speech.kokoro import KokoroTTS

            files = build_kokoro_standin(Path(tmp) / "kokoro")
            kokoro = KokoroTTS(**files)
            sub = texts[:max(1, args.docs // 8)]
            out, t_k = timed(lambda: [kokoro.synthesize(t) for t in sub])
            results["kokoro_tiny_random_standin"] = {"x_real_time": round(sum(s.duration for s in out) / t_k, 1),
                                                     "note": "tiny random stand-in, not the real model's speed"}

    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
