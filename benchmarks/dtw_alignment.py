"""Accuracy and speed of the DTW fallback word aligner (salad.speech.align.DTWAligner) where the true word times are known.

Setting: each transcript of the LJ Speech sample (16 sentences, ~290 words) is synthesized by espeak-ng voices that
DIFFER from the aligner's reference rendering (other voice, rate and pitch variant); the true word times of these
"recordings" come from espeak itself (salad.speech.tts). To look a little more like a real recording, each one gets seeded
leading and trailing silence (0.1-0.7 s), a gain, and white noise 50 dB below full scale. The aligner renders the
transcript with its own voice (en-us) and warps. Error = |aligned - true| for every word start and end, in ms.

Baseline in the same run: linear stretch (the rendering's word times scaled by the duration ratio, no warping);
speed baseline: the textbook double-loop DTW (salad.speech.align.naive_dtw_path) on the first clip, checked to give the
same path.
This is espeak against espeak: an optimistic bound for natural speech, where the spectra differ more.

    .venv/bin/python benchmarks/dtw_alignment.py
    .venv/bin/python benchmarks/dtw_alignment.py --targets en-gb-x-rp:150 en-us+f3:210 --no-match-rate
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

from salad.speech.align import (DTWAligner, DTWConfig, dtw_path, naive_dtw_path, pairwise_euclidean,
                                spectral_features)
from salad.speech.tts import EspeakTTS

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "data/raw/speech/ljspeech_sample_manifest.jsonl.gz"
SAMPLE_RATE = 24000


def transcripts() -> list[str]:
    with gzip.open(MANIFEST, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def make_recording(tts: EspeakTTS, text: str, rng: np.random.Generator):
    """A target clip with known word times: speech between random silences, scaled, with noise added."""
    speech = tts.synthesize(text)
    lead, trail = (int(rng.uniform(0.1, 0.7) * SAMPLE_RATE) for _ in range(2))
    audio = np.concatenate([np.zeros(lead, np.float32), speech.audio * rng.uniform(0.3, 1.0),
                            np.zeros(trail, np.float32)])
    audio = (audio + 10 ** (-50 / 20) * rng.standard_normal(len(audio))).astype(np.float32)
    offset = lead / SAMPLE_RATE
    truth = [(w.start + offset, w.end + offset) for w in speech.words]
    return audio, truth


def evaluate(aligner: DTWAligner, targets: list[tuple[str, int]], texts: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    err_start, err_end, base_start, base_end = [], [], [], []
    audio_s = wall_s = 0.0
    reference = EspeakTTS(voice=aligner.config.voice, rate=aligner.config.rate, sample_rate=SAMPLE_RATE)
    for voice, rate in targets:
        tts = EspeakTTS(voice=voice, rate=rate, sample_rate=SAMPLE_RATE)
        for text in texts:
            audio, truth = make_recording(tts, text, rng)
            t0 = time.perf_counter()
            words = aligner.align(audio, SAMPLE_RATE, text)
            wall_s += time.perf_counter() - t0
            audio_s += len(audio) / SAMPLE_RATE
            assert len(words) == len(truth)
            err_start += [abs(w.start - a) * 1000 for w, (a, _) in zip(words, truth)]
            err_end += [abs(w.end - b) * 1000 for w, (_, b) in zip(words, truth)]
            ref = reference.synthesize(text)  # linear-stretch baseline
            scale = len(audio) / len(ref.audio)
            base_start += [abs(w.start * scale - a) * 1000 for w, (a, _) in zip(ref.words, truth)]
            base_end += [abs(w.end * scale - b) * 1000 for w, (_, b) in zip(ref.words, truth)]

    def summary(errors):
        e = np.asarray(errors)
        return {"median_ms": round(float(np.median(e)), 1), "p90_ms": round(float(np.percentile(e, 90)), 1),
                "within_50ms": round(float(np.mean(e <= 50)), 3)}

    return {"words": len(err_start), "audio_s": round(audio_s, 1), "align_wall_s": round(wall_s, 2),
            "audio_s_per_wall_s": round(audio_s / wall_s, 1),
            "dtw": {"start": summary(err_start), "end": summary(err_end), "all": summary(err_start + err_end)},
            "linear_stretch": {"start": summary(base_start), "end": summary(base_end),
                               "all": summary(base_start + base_end)}}


def dtw_speed(texts: list[str]) -> dict:
    """Vectorised against naive DTW on the first transcript (same features, same path)."""
    tts = EspeakTTS(voice="en-gb-x-rp", rate=150, sample_rate=SAMPLE_RATE)
    ref = EspeakTTS(sample_rate=SAMPLE_RATE).synthesize(texts[0])
    cost = pairwise_euclidean(spectral_features(ref.audio, SAMPLE_RATE), spectral_features(tts.synthesize(texts[0]).audio,
                                                                                    SAMPLE_RATE))
    t0 = time.perf_counter()
    fast = dtw_path(cost)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive_dtw_path(cost)
    t_slow = time.perf_counter() - t0
    return {"cost_shape": list(cost.shape), "vectorised_s": round(t_fast, 4), "naive_s": round(t_slow, 3),
            "speedup": round(t_slow / t_fast, 1), "same_path": bool(np.array_equal(fast, slow))}


def _frames_db(audio: np.ndarray) -> np.ndarray:
    hop = SAMPLE_RATE // 100
    n = len(audio) // hop
    energy = (audio[:n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(1) + 1e-12
    return 10 * np.log10(energy / energy.max())


def lj_check(floor_db: float = -35.0, min_pause_s: float = 0.15) -> dict:
    """Partial ground truth on the real LJ recordings, from energy alone (10 ms frames, `floor_db` below the peak).

    - onset/offset: |first word start - speech onset| and |last word end - speech offset| in ms;
    - pauses: frames of internal silences of at least `min_pause_s` that lie inside a word span (they should fall
      between words; a low fraction is better), for the DTW aligner and the linear-stretch baseline.
    With DTWConfig.snap_pauses (the default) both are partly circular, because snapping uses the same energy
    pauses; run with snap_pauses=False to see what the warping alone achieves.
    """
    from salad.speech.align import make_aligner
    from salad.speech.natural import iter_natural, new_stats

    aligner = make_aligner("dtw", sample_rate=SAMPLE_RATE)
    reference = EspeakTTS(voice=aligner.config.voice, rate=aligner.config.rate, sample_rate=SAMPLE_RATE)
    stats = new_stats(MANIFEST)
    t0 = time.perf_counter()
    items = list(iter_natural(MANIFEST, aligner, SAMPLE_RATE, stats=stats, progress=False))
    wall = time.perf_counter() - t0
    onset, offset, inside, inside_base, pause_frames = [], [], 0, 0, 0
    for record, audio in items:
        db = _frames_db(audio)
        loud = np.nonzero(db > floor_db)[0]
        on, off = loud[0] * 0.01, (loud[-1] + 1) * 0.01
        words = record["words"]
        onset.append(abs(words[0][3] - on) * 1000)
        offset.append(abs(words[-1][4] - off) * 1000)
        quiet = db <= floor_db
        quiet[:loud[0]] = quiet[loud[-1] + 1:] = False
        runs = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(int), [0]])))
        pause = np.zeros(len(db), bool)
        for a, b in zip(runs[::2], runs[1::2]):
            if (b - a) * 0.01 >= min_pause_s:
                pause[a:b] = True
        ref = reference.synthesize(record["text"])
        scale = len(audio) / len(ref.audio)
        for spans, counter in (([(w[3], w[4]) for w in words], "dtw"),
                               ([(w.start * scale, w.end * scale) for w in ref.words], "base")):
            covered = np.zeros(len(db), bool)
            for a, b in spans:
                covered[int(round(a * 100)):int(round(b * 100))] = True
            if counter == "dtw":
                inside += int((pause & covered).sum())
            else:
                inside_base += int((pause & covered).sum())
        pause_frames += int(pause.sum())
    return {"stats": {k: v for k, v in stats.items() if k != "skipped_records"}, "wall_s": round(wall, 2),
            "audio_s_per_wall_s": round(stats["audio_hours"] * 3600 / wall, 1),
            "onset_error_ms_median": round(float(np.median(onset)), 1),
            "offset_error_ms_median": round(float(np.median(offset)), 1),
            "internal_pause_s": round(pause_frames * 0.01, 2),
            "pause_inside_words_fraction": {"dtw": round(inside / max(1, pause_frames), 3),
                                            "linear_stretch": round(inside_base / max(1, pause_frames), 3)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=["en-gb-x-rp:150", "en-us+f3:210", "en-029:160"],
                    help="voice:rate of the target 'recordings'")
    ap.add_argument("--no-match-rate", action="store_true", help="render the reference at the fixed rate only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lj", action="store_true", help="also run the natural LJ sample and its energy checks")
    args = ap.parse_args()
    targets = [(t.split(":")[0], int(t.split(":")[1])) for t in args.targets]
    texts = transcripts()
    aligner = DTWAligner(DTWConfig(match_rate=not args.no_match_rate), sample_rate=SAMPLE_RATE)
    result = {"targets": args.targets, "config": repr(aligner.config), **evaluate(aligner, targets, texts, args.seed),
              "dtw_speed": dtw_speed(texts)}
    if args.lj:
        result["lj_sample"] = lj_check()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
