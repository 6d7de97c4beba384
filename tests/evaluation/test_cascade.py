"""The cascaded topline (salad.evaluation.cascade): the oracle transcript, Whisper from a local folder (a tiny random
checkpoint built offline), chunking at word boundaries, and the cascade's audio lookup and transcript cache."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from salad.evaluation.cascade import (
    WHISPER_REPO, Cascade, OracleTranscriber, WhisperTranscriber, chunk_bounds, make_transcriber, speech_of,
)
from salad.speech.synthesis import synthesize_corpus
from salad.speech.tts import EspeakTTS, Speech, WordTime

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>",
            "<|notimestamps|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """A tiny random Whisper checkpoint with a byte-level tokenizer and the standard feature extractor, saved with
    save_pretrained as openai/whisper-large-v3 is (everything is built offline)."""
    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizer)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path = tmp_path_factory.mktemp("whisper")
    (path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(bytes_to_unicode().values())}))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), unk_token=SPECIALS[0],
                                 bos_token=SPECIALS[0], eos_token=SPECIALS[0], pad_token=SPECIALS[0])
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    ids = tokenizer.convert_tokens_to_ids(SPECIALS)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, encoder_layers=1, decoder_layers=1, d_model=32,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
                           decoder_start_token_id=ids[1], eos_token_id=ids[0], pad_token_id=ids[0],
                           bos_token_id=ids[0])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    g = model.generation_config
    g.decoder_start_token_id, g.eos_token_id, g.pad_token_id = ids[1], ids[0], ids[0]
    g.no_timestamps_token_id = ids[5]
    g.suppress_tokens = ids[1:]  # a random model would emit special tokens only; make it write bytes
    g.begin_suppress_tokens = [ids[0]]
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def tone_speech(seconds: float, sample_rate: int = 24000, seed: int = 0) -> Speech:
    """Noise with a "word" every second ([i, i + 0.5] s), as synthesized speech carries word times."""
    audio = (np.random.default_rng(seed).standard_normal(int(seconds * sample_rate)) * 0.1).astype(np.float32)
    words = [WordTime(f"w{i}", 3 * i, 3 * i + 2, float(i), i + 0.5) for i in range(int(seconds))]
    return Speech(audio, sample_rate, words)


def reference_transcript(whisper_dir, pieces: list[np.ndarray], max_new_tokens: int) -> list[str]:
    """Whisper by hand, as its model card runs it: processor features at 16 kHz, generate, decode."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(whisper_dir)
    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    out = []
    for piece in pieces:
        features = processor(piece, sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(features, max_new_tokens=max_new_tokens)
        out.append(processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
    return out


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    r = Fraction(16000, rate)
    return resample_poly(audio, r.numerator, r.denominator).astype(np.float32)


def test_oracle_returns_the_spoken_text():
    t = make_transcriber(None)
    assert isinstance(t, OracleTranscriber) and not t.needs_audio
    assert t.transcribe("ctx-1", "Question: Why?\nAnswer:", None) == "Question: Why?\nAnswer:"


def test_chunks_cut_in_pauses_between_words():
    speech = tone_speech(65)
    # pauses are [i + 0.5, i + 1]: cuts at i + 0.75, the last one within 30 s of the chunk's start
    assert chunk_bounds(speech.words, 65.0, 30.0) == [(0.0, 29.75), (29.75, 59.75), (59.75, 65.0)]
    assert chunk_bounds(speech.words, 12.0, 30.0) == [(0.0, 12.0)]
    assert chunk_bounds([], 70.0, 30.0) == [(0.0, 30.0), (30.0, 60.0), (60.0, 70.0)]  # no word times: hard cuts
    with pytest.raises(ValueError):
        chunk_bounds([], 0.0, 30.0)


def test_whisper_transcribes_like_the_model_card(whisper_dir):
    transcriber = WhisperTranscriber(whisper_dir, device="cpu", max_new_tokens=6)
    assert transcriber.needs_audio and transcriber.sample_rate == 16000
    speech = tone_speech(3)
    got = transcriber.transcribe("ctx-1", "ignored text", speech)
    assert got and got == reference_transcript(whisper_dir, [to_16k(speech.audio, 24000)], 6)[0]


def test_long_audio_is_transcribed_in_word_aligned_pieces(whisper_dir):
    transcriber = WhisperTranscriber(whisper_dir, device="cpu", max_new_tokens=4)
    speech = tone_speech(65, seed=1)
    audio = to_16k(speech.audio, 24000)
    pieces = np.split(audio, [round(29.75 * 16000), round(59.75 * 16000)])
    expected = reference_transcript(whisper_dir, pieces, 4)
    assert len(expected) == 3
    assert transcriber.transcribe("ctx-2", "", speech) == " ".join(e for e in expected if e)


def test_missing_whisper_folder_names_the_checkpoint_and_the_param(tmp_path, whisper_dir):
    with pytest.raises(FileNotFoundError, match=rf"evaluate.asr_model.*{WHISPER_REPO}") as e:
        make_transcriber(str(tmp_path / "whisper-large-v3"))
    assert "null" in str(e.value)
    transcriber = make_transcriber(str(whisper_dir))
    assert isinstance(transcriber, WhisperTranscriber)
    with pytest.raises(ValueError, match="needs the context's audio"):
        transcriber.transcribe("ctx-3", "text", None)


class Recorder:
    """A transcriber that needs audio and records what it was given."""

    needs_audio = True

    def __init__(self):
        self.calls = []

    def transcribe(self, context_id, text, audio):
        self.calls.append((context_id, text, audio))
        return f" {len(audio.words)} words "


def test_cascade_reads_the_store_audio_once_per_context(tmp_path):
    docs = [{"id": "ctx-a", "text": "Question: Where do fish live? Answer:"},
            {"id": "ctx-b", "text": "The sun is hot."}]
    synthesize_corpus(EspeakTTS(), docs, tmp_path / "eval", "eval")
    recorder = Recorder()
    cascade = Cascade(lm="the teacher", transcriber=recorder, speech_dir=tmp_path / "eval")
    assert cascade.transcript("ctx-a", docs[0]["text"]) == "6 words"  # stripped
    assert cascade.transcript("ctx-a", docs[0]["text"]) == "6 words"
    assert cascade.transcript("ctx-b", docs[1]["text"]) == "4 words"
    assert [c[0] for c in recorder.calls] == ["ctx-a", "ctx-b"]  # cached by speech id
    audio = recorder.calls[0][2]
    assert audio.sample_rate == 24000 and audio.audio.dtype == np.float32 and np.abs(audio.audio).max() <= 1.0
    assert [w.word for w in audio.words] == ["Question:", "Where", "do", "fish", "live?", "Answer:"]
    assert recorder.calls[0][1] == docs[0]["text"]
    assert cascade.transcripts == {"ctx-a": "6 words", "ctx-b": "4 words"}
    with pytest.raises(ValueError, match="no speech for context 'ctx-c'.*salad synthesize"):
        cascade.transcript("ctx-c", "unknown")
    with pytest.raises(ValueError, match="needs the speech store"):
        Cascade(lm=None, transcriber=Recorder())
    assert Cascade(lm=None, transcriber=OracleTranscriber()).transcript("ctx-z", " a b ") == "a b"


def test_speech_of_a_store_record():
    record = {"sample_rate": 24000, "words": [["Hi", 0, 2, 0.1, 0.4]]}
    speech = speech_of(record, np.array([0, 16384, -32768], dtype=np.int16))
    assert speech.audio.tolist() == [0.0, 0.5, -1.0] and speech.words == [WordTime("Hi", 0, 2, 0.1, 0.4)]
