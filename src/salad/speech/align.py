"""Word aligners for natural speech: give every speakable word of a transcript its time span in a recording.

Why: interleaving (docs/design.md §3) cuts speech spans at word boundaries, so natural recordings (LJ Speech, LibriHeavy,
Emilia) need word timestamps like the synthesized corpora get from their TTS. The paper uses the MMS CTC forced
aligner (Pratap et al., 2024); this module has two aligners with one interface, `aligner.align(audio, sample_rate,
text) -> list[WordTime]` (salad.speech.tts.WordTime: character span in `text` plus start/end seconds in `audio`):

- `CTCAligner`: CTC Viterbi forced alignment (`ctc_viterbi`, implemented here in numpy: torchaudio has no build for
  our CPU torch) over the emissions of a local `transformers` Wav2Vec2ForCTC checkpoint (a folder with the model,
  `vocab.json` and the feature extractor's config (`preprocessor_config.json`, or `processor_config.json` as
  transformers 5 writes it), e.g. facebook/wav2vec2-base-960h saved with `save_pretrained`).
- `DTWAligner`: the offline fallback that needs no model: render the transcript with espeak-ng (whose word times are
  known, salad.speech.tts), compute per-utterance normalised MFCCs of rendering and recording, align them by dynamic time
  warping (`dtw_path`, vectorised row by row) and carry the rendering's word boundaries through the warping path.
  Boundaries that fall near a pause of the recording are then moved into it (`snap_to_pauses`), because a natural
  speaker pauses where the rendering does not. Accuracy is measured in benchmarks/dtw_alignment.py (espeak voice
  against espeak voice, so an optimistic bound for natural speech). Memory is about 12 bytes x (100 x seconds)^2
  (40 s: 190 MB); time about 0.1-0.3 s per 10 s clip on one CPU core.

Words are the transcript's *speakable* whitespace-separated words (at least one letter or digit), exactly as in
salad.speech.tts: `words == [w for w in text.split() if any(c.isalnum() for c in w)]`, with their character spans. Every
aligner returns exactly one WordTime per speakable word, ordered, non-overlapping, with 0 <= start < end <= duration.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.fft import dct
from scipy.signal import resample_poly

from salad.speech.encoders.logmel import mel_filterbank
from salad.speech.tts import MIN_WORD_SECONDS, EspeakTTS, WordTime, word_weight

__all__ = ["Aligner", "TranscriptMismatch", "speakable_words", "ctc_viterbi", "CTCAligner", "dtw_path", "naive_dtw_path",
           "DTWConfig", "DTWAligner", "spectral_features", "pairwise_euclidean", "snap_to_pauses", "finalize_spans",
           "make_aligner"]

_WORD_RE = re.compile(r"\S+")


class Aligner(Protocol):
    """Anything that gives each speakable word of `text` its span in `audio` (mono float, `sample_rate` Hz)."""

    name: str

    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> list[WordTime]: ...


def speakable_words(text: str) -> list[tuple[str, int, int]]:
    """(word, char_start, char_end) of every whitespace-separated word holding a letter or digit (as salad.speech.tts)."""
    return [(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(text) if any(c.isalnum() for c in m.group())]


def finalize_spans(text: str, spans: list[tuple[float, float]], duration: float) -> list[WordTime]:
    """WordTimes for the speakable words of `text` from raw (start, end) seconds, made valid.

    Aligners can produce touching or inverted spans (a warping path that stalls, a word squeezed to one frame). The
    repair is minimal and in order: clip to [0, duration], start at or after the previous end, end at least
    MIN_WORD_SECONDS after the start (shrunk evenly at the very end of the audio so that everything still fits).
    """
    words = speakable_words(text)
    if len(spans) != len(words):
        raise ValueError(f"{len(spans)} spans for {len(words)} speakable words")
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration!r}")
    floor = min(MIN_WORD_SECONDS, duration / max(1, len(words)))
    out: list[WordTime] = []
    prev_end = 0.0
    for k, ((word, cs, ce), (a, b)) in enumerate(zip(words, spans)):
        latest_start = duration - floor * (len(words) - k)  # leave room for this and the remaining words
        start = min(max(float(a), prev_end), latest_start)
        end = min(max(float(b), start + floor), duration - floor * (len(words) - k - 1))
        end = max(end, math.nextafter(start, math.inf))
        out.append(WordTime(word=word, char_start=cs, char_end=ce, start=start, end=end))
        prev_end = end
    return out


# ---------------------------------------------------------------------------------------------------------------
# CTC forced alignment.


def ctc_viterbi(log_probs: np.ndarray, targets: list[int] | np.ndarray, blank: int = 0) -> tuple[np.ndarray, float]:
    """Best CTC alignment of `targets` to frame log-probabilities `log_probs` [T, V].

    The alignment runs over the extended label sequence z = (blank, y1, blank, y2, ..., yL, blank) of S = 2L+1
    states: from state s a frame may stay in s, go to s+1, or skip to s+2 when z[s+2] is a label different from
    z[s] (two equal labels need a blank between them). It starts in state 0 or 1 and ends in state S-1 or S-2.
    Returns (state index per frame [T], total log-probability of the path). Ties go to the smaller predecessor move
    (stay before step before skip), so the result is deterministic.

    Label j (0-based) occupies the frames where the state is 2j+1. Raises ValueError when no alignment exists
    (fewer frames than labels plus the blanks forced between repeats).
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"log_probs must be [frames, vocabulary], got shape {lp.shape}")
    y = np.asarray(targets, dtype=np.int64).reshape(-1)
    n_frames, vocab = lp.shape
    if not 0 <= blank < vocab:
        raise ValueError(f"blank id {blank} is outside the vocabulary of {vocab}")
    if y.size == 0:
        raise ValueError("no target labels to align")
    if np.any(y < 0) or np.any(y >= vocab) or np.any(y == blank):
        raise ValueError("targets must be vocabulary ids other than the blank")
    repeats = int(np.sum(y[1:] == y[:-1]))
    if n_frames < y.size + repeats:
        raise ValueError(f"{n_frames} frames cannot hold {y.size} labels ({repeats} repeats need a blank between)")

    ext = np.full(2 * y.size + 1, blank, dtype=np.int64)
    ext[1::2] = y
    n_states = ext.size
    can_skip = np.zeros(n_states, dtype=bool)
    can_skip[3::2] = ext[3::2] != ext[1:-2:2]  # label state s may be entered from s-2 when the labels differ

    neg = -np.inf
    alpha = np.full(n_states, neg)
    alpha[0] = lp[0, ext[0]]
    alpha[1] = lp[0, ext[1]]
    back = np.zeros((n_frames, n_states), dtype=np.int8)  # 0 stay, 1 step, 2 skip
    emit = lp[:, ext]  # [T, S]
    cand = np.empty((3, n_states))
    for t in range(1, n_frames):
        cand[0] = alpha
        cand[1, 0] = neg
        cand[1, 1:] = alpha[:-1]
        cand[2, :2] = neg
        cand[2, 2:] = np.where(can_skip[2:], alpha[:-2], neg)
        move = np.argmax(cand, axis=0)
        back[t] = move
        alpha = cand[move, np.arange(n_states)] + emit[t]

    last = n_states - 1 if alpha[n_states - 1] >= alpha[n_states - 2] else n_states - 2
    score = float(alpha[last])
    if not np.isfinite(score):
        raise ValueError("no CTC alignment has finite probability (a target label has probability 0 everywhere)")
    states = np.empty(n_frames, dtype=np.int64)
    s = last
    for t in range(n_frames - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    return states, score


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


class CTCAligner:
    """Forced alignment with a local `transformers` Wav2Vec2ForCTC checkpoint (character vocabulary).

    Transcript to labels: each speakable word is upper- or lower-cased to the vocabulary's letter case, accents are
    stripped (café -> CAFE), and characters outside the vocabulary are dropped; the word delimiter token (`|`) is put
    between words when the vocabulary has one, as the model was trained to emit it. The CTC blank is the model's pad
    token (the Wav2Vec2 convention). Audio is resampled to the feature extractor's rate (16 kHz) and normalised as it
    specifies.

    Times: emission frame k covers [k·stride, (k+1)·stride) with stride the product of the conv strides (20 ms for
    wav2vec2-base); a word runs from the first frame of its first label to the end of the last frame of its last.
    A word with no vocabulary character (e.g. "1984" for an English letters-only model) has no label: it gets the gap
    between its aligned neighbours, split by letter/digit count with other label-less words there; when that gap is
    shorter than MIN_WORD_SECONDS per word it shares the previous aligned word's span instead (as salad.speech.tts does for
    words that espeak merges). A transcript with no vocabulary character at all is a ValueError.
    """

    name = "ctc"

    def __init__(self, model_path: str | Path, device: str = "cpu") -> None:
        path = Path(model_path)
        missing = [f for f in ("config.json", "vocab.json") if not (path / f).is_file()]
        if not any((path / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
            missing.append("preprocessor_config.json or processor_config.json")
        if missing:
            raise FileNotFoundError(
                f"CTC aligner model folder {str(path)!r} lacks {missing}; provide a Wav2Vec2ForCTC checkpoint saved "
                f"with model.save_pretrained(folder) and Wav2Vec2Processor.save_pretrained(folder) (e.g. "
                f"facebook/wav2vec2-base-960h downloaded once on a machine with hub access)")
        import torch
        from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

        self.model_path = str(path)
        self.device = device
        self.model = Wav2Vec2ForCTC.from_pretrained(path, local_files_only=True).to(device).eval()
        self.tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(path, local_files_only=True)
        self.features = Wav2Vec2FeatureExtractor.from_pretrained(path, local_files_only=True)
        self._torch = torch
        self.vocab: dict[str, int] = self.tokenizer.get_vocab()
        self.blank = self.model.config.pad_token_id
        if self.blank is None or not 0 <= self.blank < self.model.config.vocab_size:
            raise ValueError(f"{self.model_path}: the model config has no valid pad_token_id to use as CTC blank")
        delim = self.tokenizer.word_delimiter_token
        self.delimiter = self.vocab.get(delim) if delim else None
        letters = [t for t in self.vocab if len(t) == 1 and t.isalpha()]
        self.upper = sum(t.isupper() for t in letters) >= sum(t.islower() for t in letters)
        self.sample_rate = int(self.features.sampling_rate)
        self.stride = int(np.prod(self.model.config.conv_stride))

    def __repr__(self) -> str:
        return f"CTCAligner(model_path={self.model_path!r}, device={self.device!r})"

    def word_labels(self, word: str) -> list[int]:
        """Vocabulary ids of `word`'s characters (case folded, accents stripped, unknown characters dropped)."""
        w = _strip_accents(word)
        w = w.upper() if self.upper else w.lower()
        specials = {self.blank, self.delimiter}
        return [self.vocab[c] for c in w if c in self.vocab and self.vocab[c] not in specials]

    def emissions(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Log-probabilities [frames, vocabulary] of mono float `audio`."""
        ratio = Fraction(self.sample_rate, int(sample_rate))
        x = np.asarray(audio, dtype=np.float32)
        if ratio != 1:
            x = resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
        inputs = self.features(x, sampling_rate=self.sample_rate, return_tensors="pt")
        with self._torch.inference_mode():
            logits = self.model(inputs.input_values.to(self.device)).logits[0]
            return self._torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> list[WordTime]:
        words = speakable_words(text)
        if not words:
            raise ValueError(f"text has no speakable word: {text[:80]!r}")
        labels = [self.word_labels(w) for w, _, _ in words]
        if not any(labels):
            raise ValueError(f"no character of the transcript is in the CTC vocabulary: {text[:80]!r}")
        targets: list[int] = []
        label_word: list[int] = []  # word index of every target (-1 for delimiters)
        for k, ids in enumerate(labels):
            if not ids:
                continue
            if targets and self.delimiter is not None:
                targets.append(self.delimiter)
                label_word.append(-1)
            targets.extend(ids)
            label_word.extend([k] * len(ids))
        log_probs = self.emissions(audio, sample_rate)
        try:
            states, _ = ctc_viterbi(log_probs, targets, self.blank)
        except ValueError as e:
            raise ValueError(f"CTC alignment failed: {e}") from None
        frame_s = self.stride / self.sample_rate
        first = np.full(len(words), np.inf)
        last = np.full(len(words), -np.inf)
        label_frames = np.nonzero(states % 2 == 1)[0]
        for t in label_frames:
            k = label_word[states[t] // 2]
            if k >= 0:
                first[k] = min(first[k], t)
                last[k] = max(last[k], t)
        spans: list[tuple[float, float] | None] = [
            (first[k] * frame_s, (last[k] + 1) * frame_s) if labels[k] else None for k in range(len(words))]
        duration = len(audio) / sample_rate
        return finalize_spans(text, _fill_unaligned(spans, [w for w, _, _ in words], duration), duration)


def _fill_unaligned(spans: list[tuple[float, float] | None], words: list[str],
                    duration: float) -> list[tuple[float, float]]:
    """Give each run of words without a span (None) a share of the gap around it (see CTCAligner)."""
    out = list(spans)
    k = 0
    while k < len(out):
        if out[k] is not None:
            k += 1
            continue
        j = k
        while j < len(out) and out[j] is None:
            j += 1
        run = list(range(k, j))
        lo = out[k - 1][1] if k > 0 else 0.0
        hi = out[j][0] if j < len(out) else duration
        if hi - lo < MIN_WORD_SECONDS * len(run) and k > 0:  # no gap: share the previous word's span
            run = [k - 1] + run
            lo = out[k - 1][0]
        elif hi - lo < MIN_WORD_SECONDS * len(run):  # at the very start: share the next word's span
            run = run + [j]
            hi = out[j][1]
        weights = np.cumsum([0] + [word_weight(words[i]) for i in run], dtype=np.float64)
        bounds = lo + (hi - lo) * weights / weights[-1]
        for n, i in enumerate(run):
            out[i] = (float(bounds[n]), float(bounds[n + 1]))
        k = j
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------------
# Dynamic time warping against a TTS rendering.


def dtw_path(cost: np.ndarray, free_rows: int = 0) -> np.ndarray:
    """Minimum-cost monotone path through `cost` [N, M] from (0, 0) to (N-1, M-1) with steps (1,0), (0,1), (1,1).

    D[i, j] = cost[i, j] + min(D[i-1, j], D[i-1, j-1], D[i, j-1]). Row i is computed at once: with
    B[j] = cost[i, j] + min(D[i-1, j], D[i-1, j-1]) and C the cumulative sum of cost[i, :],
    D[i, j] = min_{k<=j} (B[k] + C[j] - C[k]) = C[j] + cummin(B - C)[j]. Backtracking from (N-1, M-1) prefers the
    diagonal, then the vertical, then the horizontal predecessor on ties. Returns [P, 2] (i, j) pairs.
    Costs must be finite. Memory is N·M float64 (a 10 s clip against its rendering at 10 ms frames: about 8 MB).

    `free_rows`: the first and last `free_rows` rows are optional (the silence padded around a rendering): the path
    may start at (i, 0) for any i <= free_rows, D[i, 0] = cost[i, 0] there, and end at the row of least D[i, M-1]
    among the last free_rows + 1 (ties: the last). Without it, a recording that starts at its first word must be
    warped through the whole pad, and the first word lands up to a pad late.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"cost must be a non-empty 2-D matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cost must be finite")
    n, m = c.shape
    free_rows = _check_free_rows(free_rows, n)
    acc = np.empty((n, m), dtype=np.float64)
    acc[0] = np.cumsum(c[0])
    for i in range(1, n):
        prev = acc[i - 1]
        b = c[i].copy()
        if i > free_rows:
            b[0] += prev[0]
        b[1:] += np.minimum(prev[1:], prev[:-1])
        csum = np.cumsum(c[i])
        acc[i] = csum + np.minimum.accumulate(b - csum)
    return _backtrack(acc, free_rows)


def _check_free_rows(free_rows: int, n: int) -> int:
    if not isinstance(free_rows, (int, np.integer)) or free_rows < 0 or 2 * free_rows >= n:
        raise ValueError(f"free_rows must be an integer in [0, {(n - 1) // 2}] for {n} rows, got {free_rows!r}")
    return int(free_rows)


def _backtrack(acc: np.ndarray, free_rows: int = 0) -> np.ndarray:
    n, m = acc.shape
    last = acc[n - 1 - free_rows:, m - 1]
    i, j = n - 1 - free_rows + int(len(last) - 1 - np.argmin(last[::-1])), m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if j == 0 and i <= free_rows:
            break  # a free start
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            d, u, l = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if d <= u and d <= l:
                i, j = i - 1, j - 1
            elif u <= l:
                i -= 1
            else:
                j -= 1
        path.append((i, j))
    return np.array(path[::-1], dtype=np.int64)


def naive_dtw_path(cost: np.ndarray, free_rows: int = 0) -> np.ndarray:
    """The textbook double loop for `dtw_path` (same recurrence and tie rule): the reference for tests and speed."""
    c = np.asarray(cost, dtype=np.float64)
    n, m = c.shape
    free_rows = _check_free_rows(free_rows, n)
    acc = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            if j == 0 and i <= free_rows:
                best = 0.0
            else:
                best = min(acc[i - 1, j - 1] if i and j else np.inf, acc[i - 1, j] if i else np.inf,
                           acc[i, j - 1] if j else np.inf)
            acc[i, j] = c[i, j] + best
    return _backtrack(acc, free_rows)


HOP_SECONDS = 0.010
WINDOW_SECONDS = 0.025


def spectral_features(audio: np.ndarray, sample_rate: int, n_mels: int = 40, n_mfcc: int = 20) -> np.ndarray:
    """Per-utterance mean/variance-normalised MFCCs [frames, n_mfcc] every 10 ms (c0, the log energy, included).

    25 ms periodic Hann windows, power spectrum, `n_mels` HTK mel filters 0-8 kHz (salad.speech.encoders.logmel.mel_filterbank),
    log(mel + 1e-8), orthonormal DCT-II, first `n_mfcc` coefficients. Frame i is centred on (i + 0.5)·10 ms, so a
    boundary between frames b-1 and b is at time b·10 ms. Normalisation per utterance removes channel and level
    differences between a recording and the rendering.
    """
    hop = int(round(sample_rate * HOP_SECONDS))
    win = int(round(sample_rate * WINDOW_SECONDS))
    n_fft = 1 << (win - 1).bit_length()
    x = np.asarray(audio, dtype=np.float32)
    n = max(1, int(math.ceil(len(x) / hop)))
    pad_left = (win - hop) // 2
    padded = np.zeros((n - 1) * hop + win, dtype=np.float32)
    take = min(len(x), len(padded) - pad_left)
    padded[pad_left:pad_left + take] = x[:take]
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][:n]
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)).astype(np.float32)
    spec = np.fft.rfft(frames * window, n=n_fft, axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = power @ mel_filterbank(n_mels, n_fft, sample_rate, 0.0, min(8000.0, sample_rate / 2)).astype(np.float32)
    ceps = dct(np.log(mel + np.float32(1e-8)), type=2, norm="ortho", axis=-1)[:, :n_mfcc]
    ceps = ceps - ceps.mean(axis=0)
    ceps /= ceps.std(axis=0) + 1e-5
    return ceps.astype(np.float32)


def pairwise_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] Euclidean distances between the rows of `a` and of `b` (the DTW cost matrix)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)  # float32: half the memory
    return np.sqrt(np.maximum(sq, 0.0))


@dataclass(frozen=True)
class DTWConfig:
    """The DTW fallback aligner: which espeak-ng rendering the recording is warped against, and its features."""

    voice: str = "en-us"
    """espeak-ng voice of the reference rendering."""
    rate: int = 175
    """Speaking rate (words per minute) of the first rendering."""
    match_rate: bool = True
    """Render a second time at the rate that makes the rendering as long as the recording's speech (non-silent
    part), clipped to espeak's 80-450 wpm: a rendering of similar tempo needs less warping."""
    pad_seconds: float = 0.25
    """Silence added at both ends of the rendering, so that the recording's leading and trailing silence has
    silence to match instead of stretching the first and last word. The pad is optional to the warping path
    (`dtw_path(free_rows=...)`): a recording with no leading silence is not warped through it (which placed the
    first word of such clips about `pad_seconds` late)."""
    n_mels: int = 40
    n_mfcc: int = 20
    dither: float = 1e-4
    """Amplitude of seeded white noise added to both signals: digital silence (log of 0) otherwise has no match
    in a real recording's noise floor."""
    snap_pauses: bool = True
    """Move word boundaries into the recording's pauses (see `snap_to_pauses`): a natural speaker pauses where the
    rendering does not (no comma), and DTW then leaves the pause inside a neighbouring word."""
    max_cost_ratio: float = 0.96
    """A transcript is refused when the warping path's mean cost is not clearly below that of warping the recording
    against the same rendering played backwards (same voice, spectra and length, wrong order): the ratio of the two
    must not exceed this. Measured (`benchmarks/dtw_alignment.py --lj`): the 16 LJ recordings with their own
    transcripts 0.884-0.958, with another recording's 0.941-1.040; espeak clips mixed with real room noise 0.57-1.07
    with their own (the ones above 0.96 are alignments that failed, median word error 134-393 ms), 0.91-1.05 with
    another's. Chosen on those same clips: a small sample, so a stricter value may refuse good recordings."""
    min_words_per_second: float = 0.8
    max_words_per_second: float = 6.0
    """Words per second of speech (between the first and last loud frame) outside this range cannot be the
    recording's transcript (read speech runs at 2-4 words per second; 299 words on 7 s is another text)."""
    pause_db: float = -35.0
    """A 10 ms frame this many dB below the recording's loudest frame is silent (for `snap_to_pauses`)."""
    min_pause_s: float = 0.15
    """Shortest silence that counts as a pause; shorter ones are mostly stop closures inside words."""
    snap_reach_s: float = 0.2
    """A boundary moves to a pause only when it lies within this distance of it."""

    def __post_init__(self):
        if not 80 <= self.rate <= 450:
            raise ValueError(f"DTWConfig.rate: espeak-ng accepts 80-450 words per minute, got {self.rate!r}")
        if self.pad_seconds < 0 or self.dither < 0:
            raise ValueError("DTWConfig.pad_seconds and dither must be >= 0")
        if not self.max_cost_ratio > 0 or not 0 <= self.min_words_per_second < self.max_words_per_second:
            raise ValueError("DTWConfig.max_cost_ratio must be > 0 and 0 <= min_words_per_second < "
                             "max_words_per_second")
        if self.pause_db >= 0 or self.min_pause_s <= 0 or self.snap_reach_s < 0:
            raise ValueError("DTWConfig.pause_db must be < 0, min_pause_s > 0 and snap_reach_s >= 0")
        if not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError(f"DTWConfig.n_mfcc must be in [1, n_mels={self.n_mels}], got {self.n_mfcc}")


class TranscriptMismatch(ValueError):
    """The transcript cannot be what the recording says (the aligner's own cost or the speaking rate says so)."""


class DTWAligner:
    """Align a recording to an espeak-ng rendering of its transcript by DTW on MFCCs (see the module docstring).

    Boundary mapping: a rendering word boundary at frame boundary b maps to the recording frame where the warping
    path first reaches rendering frame b (for a word start) and where it leaves rendering frame b-1 (for a word
    end), so that stretches of the recording matched to the rendering's pauses stay outside the words.
    """

    name = "dtw"

    def __init__(self, config: DTWConfig = DTWConfig(), sample_rate: int = 24000) -> None:
        self.config = config
        self.sample_rate = int(sample_rate)
        self._tts: dict[int, EspeakTTS] = {}
        self._voice(config.rate)  # an unknown voice fails now

    def __repr__(self) -> str:
        return f"DTWAligner({self.config!r}, sample_rate={self.sample_rate})"

    def _voice(self, rate: int) -> EspeakTTS:
        if rate not in self._tts:
            self._tts[rate] = EspeakTTS(voice=self.config.voice, rate=rate, sample_rate=self.sample_rate)
        return self._tts[rate]

    def _dither(self, x: np.ndarray, seed: int) -> np.ndarray:
        if self.config.dither == 0:
            return x
        noise = np.random.default_rng(seed).standard_normal(len(x)).astype(np.float32)
        return x + np.float32(self.config.dither) * noise

    def render(self, text: str, speech_seconds: float | None = None):
        """The reference rendering of `text` (salad.speech.tts.Speech), at a matched rate when `speech_seconds` is given."""
        speech = self._voice(self.config.rate).synthesize(text)
        if self.config.match_rate and speech_seconds:
            rendered = _speech_extent(speech.audio, self.sample_rate)
            rate = int(round(self.config.rate * rendered / speech_seconds))
            rate = min(450, max(80, rate))
            if abs(rate - self.config.rate) > 0.03 * self.config.rate:
                speech = self._voice(rate).synthesize(text)
        return speech

    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> list[WordTime]:
        """Word times of `text` in `audio`; `TranscriptMismatch` when the text cannot be what the audio says."""
        if sample_rate != self.sample_rate:
            raise ValueError(f"audio is {sample_rate} Hz; this aligner works at {self.sample_rate} Hz")
        audio = np.asarray(audio, dtype=np.float32)
        duration = len(audio) / sample_rate
        speech_seconds = _speech_extent(audio, sample_rate)
        cfg = self.config
        rate = len(speakable_words(text)) / max(speech_seconds, HOP_SECONDS)
        if not cfg.min_words_per_second <= rate <= cfg.max_words_per_second:
            raise TranscriptMismatch(f"{len(speakable_words(text))} words on {speech_seconds:.2f} s of speech "
                                     f"({rate:.1f} words/s, outside [{cfg.min_words_per_second}, "
                                     f"{cfg.max_words_per_second}])")
        speech = self.render(text, speech_seconds)
        pad = np.zeros(int(round(cfg.pad_seconds * sample_rate)), dtype=np.float32)
        ref = np.concatenate([pad, speech.audio, pad])
        ref_feats = spectral_features(self._dither(ref, 1), sample_rate, cfg.n_mels, cfg.n_mfcc)
        rec_feats = spectral_features(self._dither(audio, 2), sample_rate, cfg.n_mels, cfg.n_mfcc)
        cost = pairwise_euclidean(ref_feats, rec_feats)
        free = min(int(round(cfg.pad_seconds / HOP_SECONDS)), (len(ref_feats) - 1) // 2)
        path = dtw_path(cost, free_rows=free)
        backwards = cost[::-1]
        backwards_path = dtw_path(backwards, free_rows=free)
        ratio = float(cost[path[:, 0], path[:, 1]].mean()
                      / backwards[backwards_path[:, 0], backwards_path[:, 1]].mean())
        if ratio > cfg.max_cost_ratio:
            raise TranscriptMismatch(f"the transcript does not match the recording, or the alignment failed: the "
                                     f"warping costs {ratio:.3f} of warping against the rendering played backwards "
                                     f"(> max_cost_ratio {cfg.max_cost_ratio})")
        n_ref = len(ref_feats)
        first_rec = np.full(n_ref, np.iinfo(np.int64).max)
        last_rec = np.full(n_ref, -1)
        np.minimum.at(first_rec, path[:, 0], path[:, 1])
        np.maximum.at(last_rec, path[:, 0], path[:, 1])
        offset = len(pad) / sample_rate
        spans = []
        for w in speech.words:
            b_start = min(n_ref - 1, max(0, int(round((w.start + offset) / HOP_SECONDS))))
            b_end = min(n_ref, max(1, int(round((w.end + offset) / HOP_SECONDS))))
            start = first_rec[b_start] * HOP_SECONDS
            end = (last_rec[b_end - 1] + 1) * HOP_SECONDS
            spans.append((start, end))
        if self.config.snap_pauses:
            spans = snap_to_pauses(spans, audio, sample_rate, self.config.pause_db, self.config.min_pause_s,
                                   self.config.snap_reach_s)
        return finalize_spans(text, spans, duration)


def _quiet_runs(audio: np.ndarray, sample_rate: int, floor_db: float) -> tuple[list[tuple[float, float]], float, float]:
    """Silent runs (start s, end s) of 10 ms frames `floor_db` below the loudest frame, and the speech onset/offset."""
    hop = int(round(sample_rate * HOP_SECONDS))
    n = max(1, len(audio) // hop)
    energy = (np.asarray(audio[:n * hop], dtype=np.float64).reshape(n, -1) ** 2).mean(1)
    quiet = energy <= energy.max() * 10 ** (floor_db / 10)
    if quiet.all():
        return [], 0.0, len(audio) / sample_rate
    loud = np.flatnonzero(~quiet)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    runs = [(a * HOP_SECONDS, b * HOP_SECONDS) for a, b in zip(edges[::2], edges[1::2])]
    return runs, loud[0] * HOP_SECONDS, (loud[-1] + 1) * HOP_SECONDS


def snap_to_pauses(spans: list[tuple[float, float]], audio: np.ndarray, sample_rate: int, floor_db: float = -35.0,
                   min_pause_s: float = 0.15, reach_s: float = 0.2) -> list[tuple[float, float]]:
    """Move word boundaries out of the recording's silences (energy only, 10 ms frames).

    - the first word starts at the speech onset and the last ends at the speech offset, when they are within
      `reach_s` (leading and trailing silence belongs to no word);
    - for each internal pause of at least `min_pause_s`: the boundary between consecutive words k, k+1 whose gap
      [end_k, start_k+1] lies within `reach_s` of the pause (the nearest one) becomes end_k = pause start,
      start_k+1 = pause end, provided each word keeps some of its own span.
    Spans are (start, end) seconds in order; the result has the same length and order.
    """
    out = [list(s) for s in spans]
    if not out:
        return []
    runs, onset, offset = _quiet_runs(audio, sample_rate, floor_db)
    if abs(out[0][0] - onset) <= reach_s and onset < out[0][1]:
        out[0][0] = onset
    if abs(out[-1][1] - offset) <= reach_s and offset > out[-1][0]:
        out[-1][1] = offset
    for a, b in runs:
        if b - a < min_pause_s or a <= onset or b >= offset:
            continue
        centre = (a + b) / 2
        k = min(range(len(out) - 1), key=lambda k: abs((out[k][1] + out[k + 1][0]) / 2 - centre), default=None)
        if k is None:
            break
        end_k, start_next = out[k][1], out[k + 1][0]
        if end_k < a - reach_s or start_next > b + reach_s:
            continue
        if a > out[k][0] and b < out[k + 1][1]:
            out[k][1], out[k + 1][0] = a, b
    return [(a, b) for a, b in out]


def _speech_extent(audio: np.ndarray, sample_rate: int, floor_db: float = -40.0) -> float:
    """Seconds between the first and the last 10 ms frame within `floor_db` of the loudest frame."""
    hop = int(round(sample_rate * HOP_SECONDS))
    n = len(audio) // hop
    if n == 0:
        return len(audio) / sample_rate
    energy = (np.asarray(audio[:n * hop], dtype=np.float64).reshape(n, hop) ** 2).mean(1)
    loud = np.nonzero(energy > energy.max() * 10 ** (floor_db / 10))[0]
    if loud.size == 0:
        return len(audio) / sample_rate
    return (loud[-1] + 1 - loud[0]) * HOP_SECONDS


def make_aligner(kind: str = "auto", *, ctc_model: str | Path | None = None, dtw: DTWConfig = DTWConfig(),
                 sample_rate: int = 24000, device: str = "cpu") -> Aligner:
    """The aligner named by `kind`: 'ctc' (needs `ctc_model`), 'dtw', or 'auto' (ctc when `ctc_model` is given,
    else dtw). A given `ctc_model` that cannot be loaded is an error, never a silent fallback to DTW."""
    if kind not in ("auto", "ctc", "dtw"):
        raise ValueError(f"unknown aligner {kind!r}; known: ['auto', 'ctc', 'dtw']")
    if kind == "ctc" and ctc_model is None:
        raise ValueError("aligner 'ctc' needs ctc_model, the folder of a local Wav2Vec2ForCTC checkpoint")
    if kind == "ctc" or (kind == "auto" and ctc_model is not None):
        return CTCAligner(ctc_model, device=device)
    return DTWAligner(dtw, sample_rate=sample_rate)

