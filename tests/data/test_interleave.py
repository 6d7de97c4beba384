"""Property tests of the interleaving and its position map (docs/design.md §3)."""

import math
import re

import numpy as np
import pytest

from conftest import TEXT, make_doc
from salad.data.batch import collate
from salad.data.tokens import tokenize
from salad.data.interleave import (
    FRAME_RATE, AlignedDoc, draw_layout, frame_range, interleave, map_tokens_to_words, text_only, word_start_cuts,
)


def test_token_word_map_uses_first_nonspace_character(tokenizer):
    doc, words = make_doc(tokenizer)
    ids, offsets = tokenize(tokenizer, TEXT)
    for t, (s, e) in enumerate(offsets):
        first = s + (len(TEXT[s:e]) - len(TEXT[s:e].lstrip()))
        j = doc.token_word[t + 1]
        assert words[j][0] <= first  # the word starts at or before the token's first character
        if j + 1 < len(words):
            assert first < words[j + 1][0]


def test_cut_points_are_word_and_token_starts(tokenizer):
    doc, words = make_doc(tokenizer)
    ids, offsets = tokenize(tokenizer, TEXT)
    cuts = doc.cut_points()
    assert cuts[0] == 0
    for j in cuts[1:]:
        first_token = int(np.nonzero(doc.token_word == j)[0][0])
        s, _ = offsets[first_token - 1]
        # the word's first token starts the word (whitespace before it may ride along), and no token straddles
        assert s <= words[j][0] and not TEXT[s:words[j][0]].strip()
        assert doc.token_word[first_token - 1] < j


@pytest.mark.parametrize("seed", range(20))
def test_layout_spans_alternate_and_respect_lengths(tokenizer, seed):
    doc, _ = make_doc(tokenizer, seed=seed)
    rng = np.random.default_rng(seed)
    cuts = doc.cut_points()
    layout = draw_layout(cuts, doc.n_words, rng, (10, 30), (5, 15))
    assert layout[0][1] == 0 and layout[-1][2] == doc.n_words - 1
    for (m1, _, b1), (m2, a2, _) in zip(layout, layout[1:]):
        assert m1 != m2 and a2 == b1 + 1
        assert a2 in cuts
    for modality, a, b in layout[:-1]:
        lo, hi = (5, 15) if modality == "speech" else (10, 30)
        n = b - a + 1
        assert n >= lo
        # longer than the range only when no cut point lies inside it
        if n > hi:
            assert not np.any((cuts > a + lo - 1) & (cuts <= a + hi))


@pytest.mark.parametrize("seed", range(20))
def test_position_map_targets_are_the_tokens_they_claim(tokenizer, seed):
    doc, _ = make_doc(tokenizer, seed=seed)
    layout = draw_layout(doc.cut_points(), doc.n_words, np.random.default_rng(seed))
    c = interleave(doc, layout)
    assert c.input_ids[0] == doc.token_ids[0]
    for i in range(len(c) - 1):
        if c.input_ids[i + 1] >= 0:  # next element is text
            k = c.target[i]
            assert k > 0 and doc.token_ids[k] == c.input_ids[i + 1]
            assert c.teacher_pos[i] == k - 1
        else:
            assert c.target[i] == -1 and c.teacher_pos[i] == -1
    assert c.target[-1] == -1
    # text tokens appear in order, and each token of w is either shown as text or lies inside a speech span
    ks = c.target[c.target >= 0]
    assert np.all(np.diff(ks) > 0)
    speech_words = set()
    for modality, a, b in layout:
        if modality == "speech":
            speech_words.update(range(a, b + 1))
    shown = set(ks.tolist())
    for k in range(1, len(doc.token_ids)):
        assert (k in shown) != (int(doc.token_word[k]) in speech_words)


@pytest.mark.parametrize("seed", range(10))
def test_speech_frames_cover_exactly_their_words(tokenizer, seed):
    doc, _ = make_doc(tokenizer, seed=seed)
    layout = draw_layout(doc.cut_points(), doc.n_words, np.random.default_rng(seed))
    c = interleave(doc, layout)
    spans = [(a, b) for m, a, b in layout if m == "speech"]
    assert len(spans) == len(c.speech_spans)
    for (a, b), (pos, f0, f1) in zip(spans, c.speech_spans):
        s, e = doc.word_times[a, 0], doc.word_times[b, 1]
        nxt = doc.word_times[b + 1, 0] if b + 1 < doc.n_words else 1e9  # the last word: no next one
        assert f0 == math.floor(s * FRAME_RATE) and f1 == min(math.ceil(e * FRAME_RATE), math.floor(nxt * FRAME_RATE))
        assert f0 / FRAME_RATE <= s and (f0 + 1) / FRAME_RATE > s  # from the frame holding the first word's start
        assert f1 / FRAME_RATE <= nxt  # never a frame holding the next word's start (its onset is the target)
        assert (f1 - 1) / FRAME_RATE < e  # and no frame after the words' end
        # all of the words' audio up to the last frame boundary before the next word
        assert f1 / FRAME_RATE >= e or f1 == math.floor(nxt * FRAME_RATE)
        assert np.all(c.input_ids[pos:pos + f1 - f0] < 0)


def test_a_span_ends_before_the_frame_holding_the_next_words_onset():
    # words end where the next begins (espeak-ng): 1.23 s lies inside frame 15 = [1.20, 1.28)
    assert frame_range(0.50, 1.23, 100) == (6, 16)
    assert frame_range(0.50, 1.23, 100, next_start_s=1.23) == (6, 15)
    assert frame_range(0.50, 1.10, 100, next_start_s=1.40) == (6, 14)  # a pause: the words' own frames only
    assert frame_range(0.50, 0.52, 100, next_start_s=0.52) == (6, 7)  # at least one frame


def test_first_text_token_after_speech_is_predicted_from_last_frame(tokenizer):
    doc, _ = make_doc(tokenizer)
    layout = [("text", 0, 9), ("speech", 10, 16), ("text", 17, doc.n_words - 1)]
    c = interleave(doc, layout)
    pos, f0, f1 = c.speech_spans[0]
    last_frame = pos + (f1 - f0) - 1
    assert c.target[last_frame] > 0
    assert np.all(c.target[pos:last_frame] == -1)


def test_truncation_keeps_the_map_consistent(tokenizer):
    doc, _ = make_doc(tokenizer)
    layout = draw_layout(doc.cut_points(), doc.n_words, np.random.default_rng(3))
    c = interleave(doc, layout, max_len=57)
    assert len(c) == 57 and c.target[-1] == -1


def test_text_only_predicts_every_next_token(tokenizer):
    doc, _ = make_doc(tokenizer)
    c = text_only(doc)
    assert np.array_equal(c.target[:-1], np.arange(1, len(doc.token_ids)))
    assert np.array_equal(c.teacher_pos[:-1], np.arange(len(doc.token_ids) - 1))


def test_collate_gathers_spans_and_masked_positions(tokenizer):
    docs = [make_doc(tokenizer, seed=s)[0] for s in range(3)]
    seqs = [interleave(d, draw_layout(d.cut_points(), d.n_words, np.random.default_rng(s)), max_len=120)
            for s, d in enumerate(docs)]
    b = collate(seqs, [d.token_ids for d in docs], [d.features for d in docs], 3)
    assert b.input_ids.shape == (3, max(len(s) for s in seqs))
    assert b.n_masked == sum(int((s.target >= 0).sum()) for s in seqs)
    assert int(b.speech_mask.sum()) == sum(f1 - f0 for s in seqs for _, f0, f1 in s.speech_spans)
    for j in range(b.n_masked):
        r, k = int(b.masked_rows[j]), int(b.teacher_pos[j]) + 1
        assert int(b.target_ids[j]) == int(docs[r].token_ids[k])
        assert int(b.text_ids[r, k - 1]) == int(docs[r].token_ids[k - 1])
    # the first frame of every span is the feature row it claims
    for j, (r, p) in enumerate(b.speech_dest.tolist()):
        f0 = next(f for pos, f, _ in seqs[r].speech_spans if pos == p)
        assert np.array_equal(b.speech_frames[j, 0].numpy(), docs[r].features[f0])


def test_frame_range_rejects_words_after_the_audio():
    with pytest.raises(ValueError, match="after the audio"):
        frame_range(10.0, 11.0, 5)


def test_overlapping_word_spans_are_rejected():
    with pytest.raises(ValueError, match="overlap"):
        map_tokens_to_words([(0, 3)], "abcdef", [(0, 4), (3, 6)])


def test_word_start_cuts_skip_words_inside_tokens():
    # word 2 starts inside a token that began in word 1
    assert list(word_start_cuts(np.array([-1, 0, 1, 1, 3]), 4)) == [0, 1, 3]
