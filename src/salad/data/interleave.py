"""Interleaved speech/text sequences and their position map to the text-only sequence (docs/design.md §3).

A document has text, its token sequence w (w_0 is the document-start token) and, for every word, a character span
and a start/end time in the document's audio. We cut the document into spans of alternating modality — text spans of
10–30 words, speech spans of 5–15 words, the first modality random — only at word starts that are also token starts,
so every text span is exactly a run of whole tokens of w. A speech span of words a..b contributes encoder frames
[floor(s_a·12.5), min(ceil(e_b·12.5), floor(s_{b+1}·12.5))) (half-open: frame j covers [j/12.5, (j+1)/12.5)): the
smallest run of frames covering the words' audio, but never a frame that holds the next word's start, whose onset
would give away the token the span's last frame predicts.

The position map: for position i of the interleaved sequence c whose NEXT element is text token w_k,
`target[i] = k` and `teacher_pos[i] = k − 1`; every other position is ignored (−1). The first text token after a
speech span is predicted from the span's last frame: that position counts, it is where transfer happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from salad.speech.encoders import FRAME_RATE

IGNORE = -1


@dataclass(frozen=True)
class AlignedDoc:
    """A document whose tokens are mapped to words and whose words are mapped to audio time and frames."""

    id: str
    token_ids: np.ndarray
    """w: int64 [n_tokens], w[0] is the document-start token."""
    token_word: np.ndarray
    """int64 [n_tokens]: index of the word holding each token's first character (−1 for the document start)."""
    word_times: np.ndarray
    """float64 [n_words, 2]: start and end of each word in seconds."""
    features: np.ndarray | None
    """[n_frames, dim] frozen encoder features at 12.5 Hz (None for text-only documents)."""

    @property
    def n_words(self) -> int:
        return len(self.word_times)

    def cut_points(self) -> np.ndarray:
        """Word indices where a span may start: word starts that are also token starts (word 0 always)."""
        return word_start_cuts(self.token_word, self.n_words)


def map_tokens_to_words(offsets: list[tuple[int, int]], text: str, word_spans: list[tuple[int, int]]) -> np.ndarray:
    """Word index of each token: the word whose character span holds the token's first non-space character.

    A token whose first character lies between words (punctuation the TTS does not speak) belongs to the word
    before it (or to word 0 before the first word); a whitespace-only token belongs to the word that follows it.
    The map is non-decreasing and covers every token.
    """
    starts = np.array([s for s, _ in word_spans], dtype=np.int64)
    ends = np.array([e for _, e in word_spans], dtype=np.int64)
    if len(starts) == 0:
        raise ValueError("document has no words")
    if np.any(starts[1:] < ends[:-1]):
        raise ValueError("word spans overlap or are out of order")
    out = np.empty(len(offsets), dtype=np.int64)
    for t, (s, e) in enumerate(offsets):
        first = s
        while first < e and text[first].isspace():
            first += 1
        # index of the last word starting at or before `first`
        out[t] = max(int(np.searchsorted(starts, first, side="right")) - 1, 0)
    if np.any(np.diff(out) < 0):
        raise ValueError("token-to-word map is not monotone (token offsets out of order)")
    return out


def word_start_cuts(token_word: np.ndarray, n_words: int) -> np.ndarray:
    """Words j such that some token starts word j, i.e. token t with token_word[t] = j and token_word[t−1] < j.

    A word whose first character sits inside a token that began in an earlier word (e.g. "can't" vs "'t") has no
    token of its own start and cannot begin a span. token_word[0] is the document start (−1)."""
    tw = np.asarray(token_word)
    body = tw[1:]
    prev = tw[:-1]
    starts = body[body > prev]
    starts = starts[(starts >= 0) & (starts < n_words)]
    cuts = np.unique(np.concatenate([[0], starts]))
    return cuts


def draw_layout(
    cuts: np.ndarray,
    n_words: int,
    rng: np.random.Generator,
    text_span: tuple[int, int] = (10, 30),
    speech_span: tuple[int, int] = (5, 15),
) -> list[tuple[str, int, int]]:
    """Spans (modality, first word, last word) covering all words, alternating modality, first modality random.

    Each span's length is drawn uniformly from its range (inclusive); the span then ends at the first cut point at
    or after the drawn end (or the document end), so a span may be longer than drawn but never shorter.
    """
    cuts = np.asarray(cuts)
    modality = "speech" if rng.random() < 0.5 else "text"
    spans = []
    a = 0
    while a < n_words:
        lo, hi = speech_span if modality == "speech" else text_span
        length = int(rng.integers(lo, hi + 1))
        nxt = cuts[cuts >= a + length]
        b_next = int(nxt[0]) if len(nxt) else n_words
        spans.append((modality, a, b_next - 1))
        a = b_next
        modality = "text" if modality == "speech" else "speech"
    return spans


def frame_range(start_s: float, end_s: float, n_frames: int, next_start_s: float | None = None) -> tuple[int, int]:
    """Half-open range of 12.5 Hz frames covering [start_s, end_s], clipped to the available frames and, when the
    next word starts at `next_start_s`, ending before the frame that holds its first audio."""
    a = int(math.floor(start_s * FRAME_RATE))
    b = int(math.ceil(end_s * FRAME_RATE))
    if next_start_s is not None:
        # A word ends where the next begins, so the frame covering the span's end usually holds up to 80 ms of the
        # next word: the onset of the very token the span's last frame predicts. A student trained on it learns
        # to read that onset instead of the words, and a spoken context ends in silence, not in an onset.
        b = min(b, int(math.floor(next_start_s * FRAME_RATE)))
    a, b = max(a, 0), min(b, n_frames)
    if a >= n_frames:
        raise ValueError(f"words at {start_s:.2f}-{end_s:.2f} s start after the audio's {n_frames} frames")
    return a, max(b, a + 1)


@dataclass
class Interleaved:
    """One interleaved sequence c and its position map to w."""

    doc_id: str
    input_ids: np.ndarray
    """int64 [T]: token id at text positions, −1 at speech positions."""
    speech_spans: list[tuple[int, int, int]]
    """(position in c of the span's first frame, first frame, end frame) for each speech span."""
    target: np.ndarray
    """int64 [T]: k if the next element of c is w_k, else −1."""
    teacher_pos: np.ndarray
    """int64 [T]: k − 1 where target is k, else −1."""

    def __len__(self) -> int:
        return len(self.input_ids)


def draw_interleaved(doc: AlignedDoc, rng: np.random.Generator, text_span: tuple[int, int],
                     speech_span: tuple[int, int], max_len: int | None = None) -> Interleaved:
    """One interleaved sequence c of `doc`: a span layout drawn from `rng` (draw_layout), then built (interleave).

    Every place that turns a document into a training or measurement sequence calls this, so the draw is the same
    everywhere: Stage I and II plans, M and F, M(c).
    """
    return interleave(doc, draw_layout(doc.cut_points(), doc.n_words, rng, text_span, speech_span), max_len)


def interleave(doc: AlignedDoc, layout: list[tuple[str, int, int]], max_len: int | None = None) -> Interleaved:
    """Build c from a layout; the document-start token always opens c. Truncated to `max_len` positions."""
    # elements: ("t", k) for token w_k, ("s", frame) for a speech frame
    elements: list[tuple[str, int]] = [("t", 0)]
    tw = doc.token_word
    for modality, a, b in layout:
        if modality == "text":
            ks = np.nonzero((tw >= a) & (tw <= b))[0]
            ks = ks[ks > 0]
            elements.extend(("t", int(k)) for k in ks)
        else:
            if doc.features is None:
                raise ValueError(f"document {doc.id}: a speech span needs features")
            next_start = doc.word_times[b + 1, 0] if b + 1 < doc.n_words else None
            f0, f1 = frame_range(doc.word_times[a, 0], doc.word_times[b, 1], len(doc.features), next_start)
            elements.extend(("s", f) for f in range(f0, f1))
    if max_len is not None:
        elements = elements[:max_len]
    n = len(elements)
    input_ids = np.full(n, IGNORE, dtype=np.int64)
    target = np.full(n, IGNORE, dtype=np.int64)
    speech_spans: list[tuple[int, int, int]] = []
    for i, (kind, v) in enumerate(elements):
        if kind == "t":
            input_ids[i] = doc.token_ids[v]
            if i > 0:
                target[i - 1] = v
        elif i == 0 or elements[i - 1][0] != "s":
            speech_spans.append((i, v, v + 1))
        else:
            pos, f0, _ = speech_spans[-1]
            speech_spans[-1] = (pos, f0, v + 1)
    teacher_pos = np.where(target >= 0, target - 1, IGNORE)
    return Interleaved(doc.id, input_ids, speech_spans, target, teacher_pos)


def text_only(doc: AlignedDoc, max_len: int | None = None) -> Interleaved:
    """c = w: every position but the last predicts the next token (used for text batches and for F)."""
    ids = doc.token_ids[:max_len] if max_len is not None else doc.token_ids
    n = len(ids)
    target = np.full(n, IGNORE, dtype=np.int64)
    target[:-1] = np.arange(1, n)
    teacher_pos = np.where(target >= 0, target - 1, IGNORE)
    return Interleaved(doc.id, ids.astype(np.int64), [], target, teacher_pos)
