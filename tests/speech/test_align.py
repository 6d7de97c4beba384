"""Word aligners (salad.speech.align): exact CTC Viterbi and DTW, span repair, and the aligners end to end."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from salad.speech.align import (CTCAligner, DTWAligner, DTWConfig, TranscriptMismatch, ctc_viterbi, dtw_path,
                                finalize_spans, make_aligner, naive_dtw_path, snap_to_pauses, speakable_words,
                                _fill_unaligned)
from salad.speech.tts import EspeakTTS

ROOT = Path(__file__).resolve().parents[2]
LJ_MANIFEST = ROOT / "data/raw/speech/ljspeech_sample_manifest.jsonl.gz"
SR = 24000


# --------------------------------------------------------------------------------------------------- CTC Viterbi


def brute_force_ctc(log_probs: np.ndarray, targets: list[int], blank: int = 0) -> float:
    """Best path score over every frame labelling that collapses to `targets` (merge repeats, drop blanks)."""
    best = -np.inf
    n_frames, vocab = log_probs.shape
    for labels in itertools.product(range(vocab), repeat=n_frames):
        collapsed = [k for k, _ in itertools.groupby(labels) if k != blank]
        if collapsed == list(targets):
            best = max(best, float(sum(log_probs[t, k] for t, k in enumerate(labels))))
    return best


def test_viterbi_hand_made_emissions_give_the_known_path() -> None:
    # vocabulary: 0 blank, 1 "a", 2 "b"; the frames clearly say a a _ b b
    p = np.array([[0.1, 0.8, 0.1],
                  [0.2, 0.7, 0.1],
                  [0.6, 0.3, 0.1],
                  [0.1, 0.1, 0.8],
                  [0.3, 0.1, 0.6]])
    states, score = ctc_viterbi(np.log(p), [1, 2], blank=0)
    # extended sequence: 0 blank, 1 a, 2 blank, 3 b, 4 blank
    assert states.tolist() == [1, 1, 2, 3, 3]
    assert score == pytest.approx(np.log(0.8 * 0.7 * 0.6 * 0.8 * 0.6), abs=1e-12)


def test_viterbi_repeated_label_needs_a_blank() -> None:
    p = np.log(np.full((3, 2), 0.5))
    states, score = ctc_viterbi(p, [1, 1], blank=0)
    assert states.tolist() == [1, 2, 3]
    assert score == pytest.approx(3 * np.log(0.5))
    with pytest.raises(ValueError, match="cannot hold"):
        ctc_viterbi(p[:2], [1, 1], blank=0)


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_frames, vocab = 6, 3
    logits = rng.normal(size=(n_frames, vocab)) * 2
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    targets = [[1, 2], [2, 2], [1, 2, 1], [1]][seed % 4]
    states, score = ctc_viterbi(log_probs, targets, blank=0)
    assert score == pytest.approx(brute_force_ctc(log_probs, targets), abs=1e-9)
    ext = [0] + [x for t in targets for x in (t, 0)]
    labels = [ext[s] for s in states]
    assert [k for k, _ in itertools.groupby(labels) if k != 0] == targets
    assert score == pytest.approx(sum(log_probs[t, k] for t, k in enumerate(labels)), abs=1e-12)


def test_viterbi_rejects_bad_targets() -> None:
    lp = np.log(np.full((4, 3), 1 / 3))
    for bad in ([], [0], [3]):
        with pytest.raises(ValueError):
            ctc_viterbi(lp, bad, blank=0)


# ----------------------------------------------------------------------------------------------------------- DTW


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 9), (12, 8), (30, 31)])
def test_vectorised_dtw_equals_the_double_loop(shape) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.integers(0, 6, size=shape).astype(np.float64)  # integers: sums are exact, ties are real
        assert np.array_equal(dtw_path(cost), naive_dtw_path(cost))


@pytest.mark.parametrize("shape,free", [((5, 9), 1), ((12, 8), 3), ((30, 31), 7), ((3, 4), 1)])
def test_free_rows_dtw_equals_the_double_loop(shape, free) -> None:
    rng = np.random.default_rng(sum(shape) + free)
    for _ in range(5):
        cost = rng.integers(0, 6, size=shape).astype(np.float64)
        assert np.array_equal(dtw_path(cost, free_rows=free), naive_dtw_path(cost, free_rows=free))


def test_free_rows_skip_the_pad_instead_of_warping_through_it() -> None:
    # rows 0-2 and 7-9 are the rendering's silent pad; the recording (columns) starts and ends with speech
    cost = np.ones((10, 4))
    for i, j in [(3, 0), (4, 1), (5, 2), (6, 3)]:
        cost[i, j] = 0.0
    assert dtw_path(cost, free_rows=3).tolist() == [[3, 0], [4, 1], [5, 2], [6, 3]]
    assert dtw_path(cost)[0].tolist() == [0, 0] and dtw_path(cost)[-1].tolist() == [9, 3]
    with pytest.raises(ValueError, match="free_rows"):
        dtw_path(cost, free_rows=5)


def test_dtw_follows_the_cheap_cells() -> None:
    cost = np.ones((4, 6))
    cheap = [(0, 0), (0, 1), (1, 2), (2, 3), (2, 4), (3, 5)]
    for i, j in cheap:
        cost[i, j] = 0.0
    assert dtw_path(cost).tolist() == [list(c) for c in cheap]


# --------------------------------------------------------------------------------------------------- span repair


def test_finalize_spans_repairs_overlaps_and_clips() -> None:
    text = "one, two — three four"
    words = finalize_spans(text, [(-0.5, 0.4), (0.3, 0.3), (0.9, 0.8), (1.0, 5.0)], duration=2.0)
    assert [w.word for w in words] == ["one,", "two", "three", "four"]
    assert [(w.char_start, w.char_end) for w in words] == [(0, 4), (5, 8), (11, 16), (17, 21)]
    assert [x for w in words for x in (w.start, w.end)] == pytest.approx([0.0, 0.4, 0.4, 0.41, 0.9, 0.91, 1.0, 2.0])
    with pytest.raises(ValueError, match="spans for"):
        finalize_spans(text, [(0, 1)], 2.0)


def test_unaligned_words_take_the_gap_or_share_a_neighbour() -> None:
    words = ["the", "1984", "war", "17", "x"]
    spans = [(0.0, 1.0), None, (2.0, 3.0), None, (3.0, 3.5)]
    out = _fill_unaligned(spans, words, 4.0)
    assert out[1] == (1.0, 2.0)  # the whole gap
    assert out[2] == pytest.approx((2.0, 2.6)) and out[3] == pytest.approx((2.6, 3.0))  # no gap: share "war" 3:2


def test_snap_to_pauses_moves_boundaries_into_silence() -> None:
    rng = np.random.default_rng(0)
    audio = np.zeros(int(2.0 * SR), np.float32)
    for a, b in [(0.20, 0.70), (1.00, 1.80)]:  # speech bursts; silence 0.70-1.00 between them
        audio[int(a * SR):int(b * SR)] = 0.3 * rng.standard_normal(int(b * SR) - int(a * SR))
    spans = [(0.10, 0.85), (0.85, 1.75)]
    assert np.allclose(snap_to_pauses(spans, audio, SR), [(0.2, 0.7), (1.0, 1.8)])
    far = [(0.10, 0.40), (0.40, 1.75)]  # the boundary is 0.3 s from the pause: left alone (ends still snap)
    assert np.allclose(snap_to_pauses(far, audio, SR), [(0.2, 0.4), (0.4, 1.8)])


# ------------------------------------------------------------------------------------------------- DTW accuracy


def lj_texts(n: int) -> list[str]:
    with gzip.open(LJ_MANIFEST, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def aligner_and_another_voice() -> tuple[DTWAligner, EspeakTTS]:
    """The default DTW aligner (its rendering: en-us at 175 wpm) and the voice of the "recordings" it aligns."""
    return DTWAligner(DTWConfig(), sample_rate=SR), EspeakTTS(voice="en-gb-x-rp", rate=150, sample_rate=SR)


def test_dtw_aligner_recovers_word_times_of_another_voice() -> None:
    """Measured with benchmarks/dtw_alignment.py: median 5.4 ms, p90 20 ms over 1,656 boundaries of 3 voices.
    Here: 8 transcripts (~140 words) in en-gb-x-rp at 150 wpm with 0.3 s of leading silence and noise."""
    aligner, target = aligner_and_another_voice()
    rng = np.random.default_rng(0)
    errors = []
    for text in lj_texts(8):
        speech = target.synthesize(text)
        lead = int(0.3 * SR)
        audio = np.concatenate([np.zeros(lead, np.float32), 0.5 * speech.audio, np.zeros(lead, np.float32)])
        audio = (audio + 0.003 * rng.standard_normal(len(audio))).astype(np.float32)
        words = aligner.align(audio, SR, text)
        assert [(w.char_start, w.char_end) for w in words] == [(s, e) for _, s, e in speakable_words(text)]
        for w, t in zip(words, speech.words):
            errors += [abs(w.start - t.start - 0.3), abs(w.end - t.end - 0.3)]
    errors = np.array(errors) * 1000
    assert len(errors) > 250
    assert np.median(errors) < 15.0
    assert np.percentile(errors, 90) < 60.0


def test_a_clip_cut_at_the_first_word_is_not_placed_a_pad_late() -> None:
    """No leading silence: the first word starts at 0. Warping through the rendering's 0.25 s pad used to put it
    about 0.24 s late in such clips."""
    aligner, target = aligner_and_another_voice()
    rng = np.random.default_rng(1)
    first = []
    for text in lj_texts(8):
        speech = target.synthesize(text)
        cut = int(speech.words[0].start * SR)  # the clip starts at the first word's onset
        audio = (0.5 * speech.audio[cut:] + 0.003 * rng.standard_normal(len(speech.audio) - cut)).astype(np.float32)
        words = aligner.align(audio, SR, text)
        first.append(abs(words[0].start - (speech.words[0].start - cut / SR)))
    assert max(first) < 0.05, first


def test_a_transcript_of_another_recording_is_refused() -> None:
    aligner, target = aligner_and_another_voice()
    texts = lj_texts(8)
    audio = 0.5 * target.synthesize(texts[0]).audio
    aligner.align(audio, SR, texts[0])  # its own transcript passes
    refused = 0
    for other in texts[1:]:
        try:
            aligner.align(audio, SR, other)
        except TranscriptMismatch as e:
            refused += 1
            assert "does not match" in str(e) or "words/s" in str(e)
    assert refused >= 5, refused  # measured: 6 of 7
    with pytest.raises(TranscriptMismatch, match=r"299 words on .* of speech"):
        aligner.align(audio, SR, " ".join(["word"] * 299))


def test_make_aligner_never_falls_back_silently(tmp_path) -> None:
    assert isinstance(make_aligner("auto"), DTWAligner)
    with pytest.raises(FileNotFoundError, match="lacks"):
        make_aligner("auto", ctc_model=tmp_path)
    with pytest.raises(ValueError, match="needs ctc_model"):
        make_aligner("ctc")
    with pytest.raises(ValueError, match="unknown aligner"):
        make_aligner("whisper")


# ------------------------------------------------------------------------------------------------- CTC end to end


@pytest.fixture(scope="module")
def tiny_ctc_model(tmp_path_factory) -> Path:
    """A random Wav2Vec2ForCTC (letters vocabulary, 20 ms frames) saved like a real checkpoint."""
    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    folder = tmp_path_factory.mktemp("tiny_w2v2")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5}
    vocab.update({chr(ord("A") + k): 6 + k for k in range(26)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                        return_attention_mask=False)
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(16, 16), conv_stride=(5, 64), conv_kernel=(10, 64),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, pad_token_id=0,
                            do_stable_layer_norm=False, feat_extract_norm="group")
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_ctc_aligner_end_to_end_on_a_tiny_model(tiny_ctc_model: Path) -> None:
    aligner = make_aligner("auto", ctc_model=tiny_ctc_model)
    assert isinstance(aligner, CTCAligner) and aligner.stride == 320 and aligner.blank == 0
    text = "Café owners — in 1984 — sold 'twelve' loaves!"
    speech = EspeakTTS(sample_rate=SR).synthesize(text)
    words = aligner.align(speech.audio, SR, text)
    assert [(w.word, w.char_start, w.char_end) for w in words] == speakable_words(text)
    assert aligner.word_labels("Café") == [aligner.vocab[c] for c in "CAFE"]
    assert aligner.word_labels("1984") == []  # no label: placed in a gap or sharing a neighbour
    previous = 0.0
    for w in words:
        assert previous <= w.start < w.end <= speech.duration
        previous = w.end
    emissions = aligner.emissions(speech.audio, SR)
    assert emissions.shape[1] == len(aligner.vocab)
    assert abs(emissions.shape[0] - speech.duration / 0.02) <= 2
    assert np.allclose(np.exp(emissions).sum(1), 1.0, atol=1e-4)


def test_ctc_aligner_rejects_text_outside_its_vocabulary(tiny_ctc_model: Path) -> None:
    aligner = CTCAligner(tiny_ctc_model)
    with pytest.raises(ValueError, match="CTC vocabulary"):
        aligner.align(np.zeros(SR, np.float32) + 0.01, SR, "1984 2001")
