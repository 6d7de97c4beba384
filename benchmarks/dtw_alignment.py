"""Accuracy and speed of the DTW fallback word aligner (salad.speech.align.DTWAligner) where the true word times are known.

Setting: each transcript of the LJ Speech sample (16 sentences, ~290 words) is synthesized by espeak-ng voices that
DIFFER from the aligner's reference rendering (other voice, rate and pitch variant); the true word times of these
"recordings" come from espeak itself (salad.speech.tts). To look more like a real recording, each one is mixed with the
real silences of the LJ Speech recordings (their room noise below -40 dB of the peak, cut from the clips' quiet
frames): half the clips get none before the first word (a clip cut at the speech onset), the others 0.1-0.7 s; a
fifth of the word gaps get a pause of 0.15-0.6 s; all get trailing room noise, a gain, and white noise 50 dB below full
scale. The aligner renders the transcript with its own voice (en-us) and warps. Error = |aligned - true| for every word
start and end, in ms; `first_word_start` is the error of the first word's start in the clips with no leading silence
(the lag a rendering-only pad caused).

Transcript checks (`mismatch`): every LJ recording and every mixed clip is aligned once with its own transcript and
once with another clip's; the DTW path cost and the speaking-rate check must refuse the swapped ones and pass the
true ones (counts of each).

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

from salad.speech.align import (DTWAligner, DTWConfig, TranscriptMismatch, dtw_path, naive_dtw_path,
                                pairwise_euclidean, spectral_features)
from salad.speech.tts import EspeakTTS

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "data/raw/speech/ljspeech_sample_manifest.jsonl.gz"
SAMPLE_RATE = 24000


def transcripts() -> list[str]:
    with gzip.open(MANIFEST, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def room_noise() -> np.ndarray:
    """The real silences of the LJ recordings: their frames more than 40 dB below the clip's peak, at 24 kHz."""
    from salad.speech.natural import NaturalChecks, load_utterance, read_manifest
    from scipy.signal import resample_poly

    hop, pieces = SAMPLE_RATE // 100, []
    for entry in read_manifest(MANIFEST):
        audio, sr = load_utterance(entry, NaturalChecks())
        audio = resample_poly(audio, SAMPLE_RATE // 300, sr // 300).astype(np.float32)  # 22.05 -> 24 kHz: 80/73.5
        n = len(audio) // hop
        frames = audio[:n * hop].reshape(n, hop)
        energy = (frames.astype(np.float64) ** 2).mean(1)
        pieces.append(frames[energy <= energy.max() * 1e-4].ravel())
    return np.concatenate(pieces)


def _noise(bank: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    start = int(rng.integers(0, len(bank) - n))
    return bank[start:start + n]


def make_recording(tts: EspeakTTS, text: str, rng: np.random.Generator, bank: np.ndarray):
    """A target clip with known word times: speech mixed with real room noise and pauses, scaled, with noise."""
    speech = tts.synthesize(text)
    gain = rng.uniform(0.3, 1.0)
    lead = 0.0 if rng.random() < 0.5 else rng.uniform(0.1, 0.7)
    pieces, truth, shift, cut = [_noise(bank, lead, rng)], [], lead, 0
    for k, w in enumerate(speech.words):
        truth.append((w.start + shift, w.end + shift))
        nxt = speech.words[k + 1] if k + 1 < len(speech.words) else None
        if nxt is not None and rng.random() < 0.2:
            split = int((w.end + nxt.start) / 2 * SAMPLE_RATE)
            pause = rng.uniform(0.15, 0.6)
            pieces += [speech.audio[cut:split] * gain, _noise(bank, pause, rng)]
            cut, shift = split, shift + len(pieces[-1]) / SAMPLE_RATE
    pieces += [speech.audio[cut:] * gain, _noise(bank, rng.uniform(0.1, 0.7), rng)]
    audio = np.concatenate(pieces)
    audio = (audio + 10 ** (-50 / 20) * rng.standard_normal(len(audio))).astype(np.float32)
    return audio, truth, lead


def evaluate(aligner: DTWAligner, targets: list[tuple[str, int]], texts: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    bank = room_noise()
    err_start, err_end, base_start, base_end, first_start = [], [], [], [], []
    refused_true = refused_swapped = clips = 0
    audio_s = wall_s = 0.0
    reference = EspeakTTS(voice=aligner.config.voice, rate=aligner.config.rate, sample_rate=SAMPLE_RATE)
    for voice, rate in targets:
        tts = EspeakTTS(voice=voice, rate=rate, sample_rate=SAMPLE_RATE)
        for i, text in enumerate(texts):
            audio, truth, lead = make_recording(tts, text, rng, bank)
            clips += 1
            t0 = time.perf_counter()
            try:
                words = aligner.align(audio, SAMPLE_RATE, text)
            except TranscriptMismatch:
                refused_true += 1
                continue
            wall_s += time.perf_counter() - t0
            audio_s += len(audio) / SAMPLE_RATE
            try:
                aligner.align(audio, SAMPLE_RATE, texts[(i + len(texts) // 2) % len(texts)])
            except TranscriptMismatch:
                refused_swapped += 1
            assert len(words) == len(truth)
            if lead == 0.0:
                first_start.append(abs(words[0].start - truth[0][0]) * 1000)
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
            "mismatch": {"clips": clips, "true_transcript_refused": refused_true,
                         "swapped_transcript_refused": refused_swapped},
            "dtw": {"start": summary(err_start), "end": summary(err_end), "all": summary(err_start + err_end),
                    "first_word_start_no_leading_silence": summary(first_start)},
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
    swapped = refused = 0
    for i, (_, audio) in enumerate(items):
        for k in (3, 5, 9):  # another recording's transcript
            swapped += 1
            try:
                aligner.align(audio, SAMPLE_RATE, items[(i + k) % len(items)][0]["text"])
            except TranscriptMismatch:
                refused += 1
    return {"stats": {k: v for k, v in stats.items() if k != "skipped_records"}, "wall_s": round(wall, 2),
            "swapped_transcripts": swapped, "swapped_transcripts_refused": refused,
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
