"""The cascaded topline (paper Table 3): speech -> ASR transcript -> the text LM (the teacher), scored as text.

The paper pairs Whisper-Large-v3 with the Qwen2.5 backbones of its models and calls the cascade its topline for
spoken language understanding. Here a `Transcriber` turns one spoken context (the audio of demonstrations and
question, as the student hears it) into text, and `Cascade` hands that text to the teacher, which the `evaluate`
stage scores with the text-mode rules (salad.evaluation.scoring) as model "cascade".

- `OracleTranscriber` returns the context's own text: a perfect ASR. It is the miniature world's cascade (no ASR
  model ships with it, and a TTS voice read back by a perfect recognizer is exactly the text), so there the cascade
  equals the teacher's text accuracy and its gap is 0 by construction.
- `WhisperTranscriber` runs a transformers Whisper checkpoint from a local folder (`evaluate.asr_model`; the paper's
  is openai/whisper-large-v3, downloaded once by the user: the pipeline opens no network connection). Whisper reads
  at most 30 s per pass, and spoken contexts run to minutes, so the audio is cut at word boundaries (the synthesized
  word times) into pieces of at most 30 s, each is transcribed, and the pieces are joined with " ".

Transcripts are cached by speech id, so a spoken context shared by several items (salad.evaluation.benchmarks dedupes
them by `context_id`) is transcribed once.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from scipy.signal import resample_poly

from salad.storage.store import ShardedStore
from salad.speech.tts import Speech, WordTime

__all__ = ["Transcriber", "OracleTranscriber", "WhisperTranscriber", "Cascade", "make_transcriber", "speech_of",
           "WHISPER_REPO"]

WHISPER_REPO = "openai/whisper-large-v3"
"""The paper's ASR (Hugging Face repo), named in the error for a missing local checkpoint."""


class Transcriber(Protocol):
    """Speech to text for the cascade."""

    needs_audio: bool
    """False when `transcribe` ignores the audio (then no speech store is opened)."""

    def transcribe(self, context_id: str, text: str, audio: Speech | None) -> str:
        """The transcript of one spoken context: `context_id` is its speech id, `text` what was synthesized and
        `audio` the synthesized speech with word times (None when `needs_audio` is False)."""
        ...


class OracleTranscriber:
    """A perfect recognizer: the transcript is the text that was spoken."""

    needs_audio = False

    def transcribe(self, context_id: str, text: str, audio: Speech | None) -> str:
        return text

    def __repr__(self) -> str:
        return "OracleTranscriber()"


class WhisperTranscriber:
    """Whisper (transformers `WhisperForConditionalGeneration` and `WhisperProcessor`) from a local folder.

    Greedy decoding; English transcription when the checkpoint is multilingual (its generation config maps
    languages), plain decoding otherwise. Audio is resampled to the feature extractor's rate (16 kHz for Whisper) with
    `resample_poly` and cut into pieces of at most `chunk_s` seconds (Whisper's 30 s window) at word boundaries.
    """

    needs_audio = True

    def __init__(self, path: str | Path, device: str | None = None, chunk_s: float = 30.0,
                 max_new_tokens: int | None = None):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(
                f"evaluate.asr_model: {self.path} is not a local Whisper checkpoint (no config.json). Download "
                f"{WHISPER_REPO} once (e.g. `hf download {WHISPER_REPO} --local-dir {self.path}`) and "
                f"set evaluate.asr_model to that folder, or set it to null for the oracle transcript")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.processor = WhisperProcessor.from_pretrained(self.path, local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(self.path, local_files_only=True,
                                                                     dtype=dtype).to(self.device).eval()
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        if chunk_s <= 0 or chunk_s > self.processor.feature_extractor.chunk_length:
            raise ValueError(f"chunk_s must be in (0, {self.processor.feature_extractor.chunk_length}] s (Whisper's "
                             f"window), got {chunk_s}")
        self.chunk_s, self.max_new_tokens = chunk_s, max_new_tokens
        lang_to_id = getattr(self.model.generation_config, "lang_to_id", None) or {}
        self._generate_kwargs = {"language": "en", "task": "transcribe"} if "<|en|>" in lang_to_id else {}

    def __repr__(self) -> str:
        return f"WhisperTranscriber({str(self.path)!r})"

    @torch.no_grad()
    def transcribe(self, context_id: str, text: str, audio: Speech | None) -> str:
        if audio is None:
            raise ValueError(f"{context_id!r}: Whisper needs the context's audio")
        samples = np.asarray(audio.audio, dtype=np.float32)
        if audio.sample_rate != self.sample_rate:
            ratio = Fraction(self.sample_rate, audio.sample_rate)
            samples = resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)
        bounds = chunk_bounds(audio.words, len(audio.audio) / audio.sample_rate, self.chunk_s)
        cuts = [round(a * self.sample_rate) for a, _ in bounds[1:]]  # sample indices of the resampled audio
        pieces = np.split(samples, cuts)
        features = self.processor.feature_extractor(pieces, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = features.input_features.to(self.device, self.model.dtype)
        kwargs = dict(self._generate_kwargs)
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        ids = self.model.generate(inputs, **kwargs)
        texts = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return " ".join(t.strip() for t in texts if t.strip())


def chunk_bounds(words: list[WordTime], duration: float, chunk_s: float) -> list[tuple[float, float]]:
    """Consecutive (start, end) seconds covering [0, duration], each at most `chunk_s` long, cut in the middle of the
    pause between two words when possible (a single word longer than `chunk_s`, which speech never has, is cut
    hard)."""
    if duration <= 0:
        raise ValueError("empty audio")
    cuts = [(a.end + b.start) / 2 for a, b in zip(words, words[1:])]
    bounds, start = [], 0.0
    while duration - start > chunk_s:
        fitting = [c for c in cuts if start < c <= start + chunk_s]
        end = fitting[-1] if fitting else start + chunk_s
        bounds.append((start, end))
        start = end
    bounds.append((start, duration))
    return bounds


def speech_of(record: dict, pcm: np.ndarray) -> Speech:
    """A synthesized speech store entry (salad.speech.synthesis) as `Speech`: int16 samples to float, word times."""
    words = [WordTime(w, int(a), int(b), float(s), float(e)) for w, a, b, s, e in record["words"]]
    return Speech(np.asarray(pcm, dtype=np.float32) / 32768.0, int(record["sample_rate"]), words)


def make_transcriber(asr_model: str | None) -> Transcriber:
    """`evaluate.asr_model` -> its transcriber: the oracle for null, Whisper from that local folder otherwise."""
    return OracleTranscriber() if asr_model is None else WhisperTranscriber(asr_model)


class Cascade:
    """ASR then the text LM: `transcript(speech_id, text)` gives the text the LM is scored on.

    `speech_dir` is the synthesized speech store of the contexts (data/speech/eval); it is opened only when the
    transcriber needs audio. Transcripts are cached by speech id and kept in `transcripts` for the stage's outputs.
    """

    def __init__(self, lm, transcriber: Transcriber, speech_dir: str | Path | None = None):
        self.lm, self.transcriber = lm, transcriber
        self.transcripts: dict[str, str] = {}
        self._store = None
        if transcriber.needs_audio:
            if speech_dir is None:
                raise ValueError(f"{transcriber!r} needs the speech store of the contexts")
            self._store = ShardedStore(speech_dir)

    def transcript(self, speech_id: str, text: str) -> str:
        if speech_id not in self.transcripts:
            audio = None
            if self._store is not None:
                if speech_id not in self._store:
                    raise ValueError(f"{self._store.path}: no speech for context {speech_id!r}; rerun `salad "
                                     f"synthesize`")
                audio = speech_of(self._store.record(speech_id), self._store.array(speech_id))
            # an empty transcript is kept: the LM then sees only the document start, as a cascade whose ASR heard
            # nothing would
            self.transcripts[speech_id] = self.transcriber.transcribe(speech_id, text, audio).strip()
        return self.transcripts[speech_id]
