"""The baselines of Tables 3 and 5: other speech LLMs (and the ASR cascade) scored the way the paper scores them.

The paper compares SALAD with an ASR cascade (Whisper-large-v3 + the Qwen2.5 backbones) and four end-to-end speech
LLMs, on speech input (Table 3) and on text input (Table 5), with the benchmarks, prompt formats, shots and
log-likelihood scoring of salad.evaluation.benchmarks. Here each of them is an adapter that loads a checkpoint from a
local folder (`from_pretrained(path, local_files_only=True)`, nothing is downloaded) and returns, for one item's
context and choices, the log-likelihood of every choice's continuation: text mode gets the context as text, speech
mode as the synthesized audio of the same spoken context that the student hears (salad.stages.synthesize's `eval`
store). acc, acc_norm (characters) and acc_bytes (UTF-8 bytes) are then `salad.evaluation.benchmarks.scored_record`
of those scores and the choice strings, exactly as for our own models.

Prompt convention (paper Appendix A.4: "we adopt when needed each model's native chat template: the 'Answer:'
segment is assigned to the assistant role, while the remaining context is presented as user input"):

- Chat models (Qwen2-Audio-7B-Instruct, Qwen2.5-Omni-7B; a chat LM in the cascade): one user turn holds the
  demonstrations and the question (as text in text mode; as audio content parts in speech mode), rendered with the
  checkpoint's own chat template (`add_generation_prompt=True`, no system message of ours: a template's default
  system prompt stays). The assistant turn is then pre-filled with "Answer:" when the context ends with it (the
  Question/Answer formats) and the continuation is " <choice>" (Table 6's "Answer: <answer>"); for the plain layout
  (StoryCloze, HellaSwag: no "Answer:") the assistant turn is empty and the continuation is the bare choice, with no
  delimiter (lm-evaluation-harness drops the target delimiter " " under a chat template). Only the continuation's
  tokens are scored, split from the context by lm-eval's rule (context tokenized alone, continuation = the joint
  tokenization minus as many leading tokens; the trailing newline of the assistant header stays in the context).
- Base models (the cascade's Qwen2.5-3B/7B; base Qwen2-Audio-7B): plain continuation, " <choice>" after the context.
  The cascade's LM is scored by `salad.evaluation.benchmarks.score_text` itself (document-start token first), so the
  cascade's text accuracy is the evaluate stage's text accuracy of the same LM, and its speech accuracy that of the
  evaluate stage's cascade run.
- Speech mode: the synthesized audio of the whole spoken context (demonstrations and question; the `synthesize` stage
  synthesizes it from the text, so it ends with the spoken "Answer:") is the user turn, resampled with
  `resample_poly` to the model's feature-extractor rate (16 kHz) and cut at word boundaries into pieces no longer
  than the feature extractor's window (its `chunk_length`: Whisper's 30 s for Qwen2-Audio, whose extractor
  truncates longer audio; the checkpoint's own value for Qwen2.5-Omni), one audio content part each. The
  assistant turn is pre-filled as in text mode, so the two modes differ only in the user turn's modality.

Adapters whose architecture `transformers` lacks (DiVA-Llama-3.1-8B, GLM-4-Voice-9B: hub remote code) raise
`ArchitectureUnavailable` when constructed; this project does not execute `trust_remote_code` code.

`evaluate_baseline` runs one baseline over the evaluate stage's items (same items, formats, demonstrations, shots and
spoken contexts) and writes per-item records of the evaluate stage's shape, with summaries, best formats and,
given the text backbone's records, the Table 3 / Table 5 gaps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from scipy.signal import resample_poly
from tqdm import tqdm

from salad.storage.atomic import read_jsonl, write_json, write_jsonl
from salad.evaluation.cascade import WHISPER_REPO, Transcriber, chunk_bounds, make_transcriber, speech_of
from salad.config import Params
from salad.evaluation.benchmarks import (
    HEADLINE, benchmark_gaps, best_formats, context_id, eval_plan, first_items, score_text, scored_record,
    skipped_record, summarize,
)
from salad.evaluation.scoring import ContextTooLong, max_positions, score_continuations
from salad.storage.store import ShardedStore
from salad.speech.tts import Speech

__all__ = ["Baseline", "BASELINES", "Adapter", "ArchitectureUnavailable", "CascadeAdapter", "Qwen2AudioAdapter",
           "Qwen25OmniAdapter", "DiVAAdapter", "GLM4VoiceAdapter", "load_baseline", "chat_turns",
           "continuation_ids", "audio_pieces", "evaluate_baseline", "score_baseline"]

ANSWER = "Answer:"
"""The segment of a context that the paper assigns to the assistant role under a chat template."""

MIN_PIECE_S = 0.04
"""Audio pieces after the first shorter than this (one Qwen2-Audio / Qwen2.5-Omni audio token) are dropped."""


class ArchitectureUnavailable(NotImplementedError):
    """The installed `transformers` has no implementation of a baseline's architecture."""


# ---------------------------------------------------------------------------------------------------------------
# Prompt pieces shared by the adapters


def chat_turns(context: str) -> tuple[str, str]:
    """(user text, assistant prefix) of a context under a chat template: a trailing "Answer:" goes to the assistant
    (paper Appendix A.4), everything before it, stripped, to the user; a context without it (StoryCloze, HellaSwag)
    is all user text and the assistant prefix is ""."""
    body = context.rstrip()
    if body.endswith(ANSWER):
        return body[:-len(ANSWER)].rstrip(), ANSWER
    return body, ""


def chat_continuations(assistant_prefix: str, choices: list[str]) -> list[str]:
    """The scored continuation strings after a chat prompt: " <choice>" after "Answer:", the bare choice at the start
    of an empty assistant turn (lm-eval's chat convention: no target delimiter)."""
    return [(" " if assistant_prefix else "") + c for c in choices]


def continuation_ids(tokenizer, context: str, continuations: list[str]) -> tuple[list[int], list[list[int]]]:
    """(context ids, continuation ids) by lm-eval's split rule: the context tokenized alone, each continuation the
    joint tokenization minus as many leading tokens (no special tokens added). Unlike
    `salad.evaluation.scoring.text_requests`, trailing whitespace of the context (the newline closing a chat
    template's assistant header) stays in the context, and no delimiter is added: `continuations` are the exact
    scored strings."""
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    context_ids = encode(context)
    if not context_ids:
        raise ValueError("empty context: nothing to predict the first continuation token from")
    out = []
    for continuation in continuations:
        ids = encode(context + continuation)[len(context_ids):]
        if not ids:
            raise ValueError(f"continuation {continuation!r} tokenizes to nothing after context {context[-40:]!r}")
        out.append(ids)
    return context_ids, out


def audio_pieces(speech: Speech, sample_rate: int, max_seconds: float) -> list[np.ndarray]:
    """`speech` resampled to `sample_rate` (`resample_poly`) and cut into consecutive pieces of at most
    `max_seconds`, in the pauses between words where it has word times (salad.evaluation.cascade.chunk_bounds), hard
    cuts otherwise (a last piece shorter than `MIN_PIECE_S` is dropped); float32."""
    samples = np.asarray(speech.audio, dtype=np.float32)
    if speech.sample_rate != sample_rate:
        ratio = Fraction(sample_rate, speech.sample_rate)
        samples = resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)
    bounds = chunk_bounds(speech.words, len(speech.audio) / speech.sample_rate, max_seconds)
    cuts = [round(start * sample_rate) for start, _ in bounds[1:]]
    pieces = np.split(samples, cuts)
    # a hard cut (no word times) can leave a tail shorter than one audio token (40 ms), which the encoders map to
    # no token at all; it holds no speech and is dropped
    return [p for i, p in enumerate(pieces) if i == 0 or len(p) >= MIN_PIECE_S * sample_rate]


def require_folder(path: str | Path, hub_id: str, what: str) -> Path:
    """`path` if it holds a checkpoint (config.json), else FileNotFoundError naming the repo and how to get it."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{what}: {path} is not a local checkpoint of {hub_id} (no config.json there). Nothing is downloaded at "
            f"run time; download it once with `hf download {hub_id} --local-dir {path}`")
    return path


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _chat_template_in(path: Path) -> str | None:
    """The processor chat template saved in a checkpoint folder (chat_template.jinja or chat_template.json), if any."""
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    if (path / "chat_template.json").is_file():
        template = json.loads((path / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    return None


class _Captured(Exception):
    """Raised by the pre-hook of `merged_embeddings` to stop a forward once the LM's inputs are known."""


@torch.no_grad()
def merged_embeddings(model, language_model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """The input embeddings [T, d] that `model(**inputs)` hands to its `language_model` (text embeddings with the
    audio encoder's outputs written into the audio placeholders, by the model's own code), captured by a forward
    pre-hook that stops the forward there, so the decoder does not run.

    Scoring then continues from these embeddings with `salad.evaluation.scoring.score_continuations`, which assumes
    positions 0..T-1 and full attention over the context; both are checked here on what the model passes (Qwen2.5-Omni
    builds 3-D M-RoPE positions, which are sequential for text and audio input), and anything else is an error.
    """
    got: dict[str, Any] = {}

    def hook(module, args, kwargs):
        got.update(kwargs)
        raise _Captured

    handle = language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(**inputs, use_cache=False)
    except _Captured:
        pass
    finally:
        handle.remove()
    embeds = got.get("inputs_embeds")
    if embeds is None or embeds.dim() != 3 or embeds.shape[0] != 1:
        raise RuntimeError(f"{type(model).__name__} did not pass one sequence of inputs_embeds to its language model")
    n = embeds.shape[1]
    positions = got.get("position_ids")
    if positions is not None:
        expected = torch.arange(n, device=positions.device)
        if positions.shape[-1] != n or not bool((positions.reshape(-1, n) == expected).all()):
            raise NotImplementedError(f"{type(model).__name__} uses non-sequential positions for this input; "
                                      f"scoring from embeddings would change them")
    mask = got.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2 and not bool(mask.bool().all()):
        raise NotImplementedError("the context's attention mask hides positions")
    return embeds[0]


# ---------------------------------------------------------------------------------------------------------------
# Adapters


class Adapter(Protocol):
    """A baseline's scorer. Both methods return the log-likelihood of each choice's continuation (see the module
    docstring for what the continuation is); acc / acc_norm / acc_bytes are `accuracy_metrics(scores, choices,
    label)`, the lengths being those of the choice strings. A request longer than the model's positions raises
    `salad.evaluation.scoring.ContextTooLong`."""

    baseline: Baseline

    def score_text(self, context: str, choices: list[str]) -> list[float]:
        """`context`: the item's few-shot prefix + context, as salad.evaluation.benchmarks builds it (ends where the
        answer starts)."""
        ...

    def score_speech(self, speech: Speech, context: str, choices: list[str],
                     context_id: str | None = None) -> list[float]:
        """`speech`: the synthesized audio of `spoken_text(item, prefix)`; `context`: the same text context as in
        `score_text` (it decides the assistant prefix; only the oracle cascade reads it, as its transcript);
        `context_id`: the speech store id (a cache key; optional)."""
        ...

    def describe(self) -> dict:
        """What the metrics record about the adapter (checkpoint, chat template used, ...)."""
        ...


class _AudioChatLM:
    """Shared by the end-to-end audio LLMs: prompt building, processing, scoring from merged embeddings.

    The model (`model_class`, from transformers) is loaded here; subclasses load `self.tokenizer` and
    `self.feature_extractor`, set `self.chat_template` (None: the checkpoint has none) and implement `_render`
    (messages -> prompt text with one audio placeholder per audio part), `_process` (prompt text + audio pieces ->
    model inputs with expanded placeholders) and `_audio_placeholder` (one audio part without a chat template).
    """

    model_class: str = ""

    def __init__(self, baseline: Baseline, path: str | Path, device: str | torch.device | None = None,
                 chat: bool | None = None):
        import transformers

        self.baseline = baseline
        self.path = require_folder(path, baseline.hub_id, f"baseline {baseline.name!r}")
        self.device = _device(device)
        cls = getattr(transformers, self.model_class)
        self.model = cls.from_pretrained(self.path, local_files_only=True,
                                         dtype=_dtype(self.device)).to(self.device).eval()
        self.model.requires_grad_(False)
        self._load_processing()
        self.chat = baseline.chat if chat is None else chat
        if self.chat and self.chat_template is None:
            raise ValueError(f"{self.path}: baseline {baseline.name!r} is scored in its chat template, but the "
                             f"checkpoint has none (no chat_template.jinja/.json, none in tokenizer_config.json)")
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.max_audio_s = float(self.feature_extractor.n_samples) / self.sample_rate
        self.limit = max_positions(self.model.config.get_text_config())

    # subclass hooks
    def _load_processing(self) -> None:
        raise NotImplementedError

    def _render(self, messages: list[dict]) -> str:
        raise NotImplementedError

    def _process(self, text: str, audio: list[np.ndarray] | None) -> dict:
        raise NotImplementedError

    def _audio_placeholder(self) -> str:
        raise NotImplementedError

    @property
    def language_model(self) -> torch.nn.Module:
        return self.model.model.language_model

    @property
    def audio_token_id(self) -> int:
        return int(self.model.config.audio_token_id)

    def prompt(self, context: str, choices: list[str],
               audio: list[np.ndarray] | None = None) -> tuple[str, list[str]]:
        """(prompt text before placeholder expansion, scored continuation strings)."""
        if self.chat:
            user, assistant = chat_turns(context)
            content = ([{"type": "audio", "audio": piece} for piece in audio] if audio is not None
                       else [{"type": "text", "text": user}])
            return self._render([{"role": "user", "content": content}]) + assistant, \
                chat_continuations(assistant, choices)
        text = self._audio_placeholder() * len(audio) if audio is not None else context.rstrip()
        return text, [" " + c for c in choices]

    def inputs(self, context: str, choices: list[str],
               speech: Speech | None = None) -> tuple[dict, list[list[int]]]:
        """(model inputs of the context, batch of one, on the model's device; continuation ids per choice)."""
        audio = audio_pieces(speech, self.sample_rate, self.max_audio_s) if speech is not None else None
        text, continuations = self.prompt(context, choices, audio)
        context_ids, conts = continuation_ids(self.tokenizer, text, continuations)
        inputs = self._process(text, audio)
        ids = inputs["input_ids"][0].tolist()
        collapsed = [t for i, t in enumerate(ids) if not (t == self.audio_token_id and i and ids[i - 1] == t)]
        if collapsed != context_ids:
            raise RuntimeError(f"{type(self).__name__}: the processed prompt does not tokenize like the prompt text "
                               f"(special tokens added or lost?)")
        out = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                out[key] = value.to(self.model.dtype) if value.is_floating_point() else value
        return out, conts

    @torch.no_grad()
    def _score(self, context: str, choices: list[str], speech: Speech | None) -> list[float]:
        inputs, conts = self.inputs(context, choices, speech)
        n = inputs["input_ids"].shape[1] + max(len(c) for c in conts) - 1
        if self.limit is not None and n > self.limit:
            raise ContextTooLong(n, self.limit)
        embeds = merged_embeddings(self.model, self.language_model, inputs)
        return score_continuations(self.model, embeds, conts)

    def score_text(self, context: str, choices: list[str]) -> list[float]:
        return self._score(context, choices, None)

    def score_speech(self, speech: Speech, context: str, choices: list[str],
                     context_id: str | None = None) -> list[float]:
        return self._score(context, choices, speech)

    def describe(self) -> dict:
        return {"path": str(self.path), "model_class": self.model_class, "chat_template": self.chat,
                "audio_window_s": self.max_audio_s, "sample_rate": self.sample_rate}


class Qwen2AudioAdapter(_AudioChatLM):
    """Qwen2-Audio-7B(-Instruct): `Qwen2AudioForConditionalGeneration` with its `Qwen2AudioProcessor`; the chat
    template is rendered by `processor.apply_chat_template` with one audio content part per piece ("Audio k:
    <|audio_bos|><|AUDIO|><|audio_eos|>" in the Instruct template) and the processor expands the placeholders.
    Its feature extractor pads or truncates every audio to 30 s, hence the pieces."""

    model_class = "Qwen2AudioForConditionalGeneration"

    def _load_processing(self) -> None:
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
        self.tokenizer = self.processor.tokenizer
        self.feature_extractor = self.processor.feature_extractor
        # Qwen2AudioProcessor falls back to a built-in template when the checkpoint has none (base Qwen2-Audio-7B);
        # whether a baseline is scored in a chat template is the registry's decision (`Baseline.chat`)
        self.chat_template = self.processor.chat_template

    def _render(self, messages: list[dict]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _process(self, text: str, audio: list[np.ndarray] | None) -> dict:
        if audio is None:
            return dict(self.processor(text=text, return_tensors="pt"))
        return dict(self.processor(text=text, audio=audio, sampling_rate=self.sample_rate, return_tensors="pt"))

    def _audio_placeholder(self) -> str:
        p = self.processor
        return p.audio_bos_token + p.audio_token + p.audio_eos_token


class Qwen25OmniAdapter(_AudioChatLM):
    """Qwen2.5-Omni-7B's thinker (`Qwen2_5OmniThinkerForConditionalGeneration`, loaded from the full checkpoint; the
    talker and token2wav, which only make speech output, are not loaded).

    `Qwen2_5OmniProcessor` cannot be built without torchvision (its video processor needs it even for audio-only
    input, and torchvision is not a dependency here), so its audio path is reproduced from the checkpoint's own
    parts: the chat template (chat_template.jinja/.json, else the tokenizer's) rendered by the tokenizer, the
    `WhisperFeatureExtractor` called as the processor calls it (16 kHz, padding to its window, attention mask), and
    each <|AUDIO|> placeholder expanded to the audio tower's output length for that piece (the model's own
    `_get_feat_extract_output_lengths`, the processor's formula).
    """

    model_class = "Qwen2_5OmniThinkerForConditionalGeneration"

    def _load_processing(self) -> None:
        from transformers import AutoTokenizer, WhisperFeatureExtractor

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(self.path, local_files_only=True)
        self.chat_template = _chat_template_in(self.path) or getattr(self.tokenizer, "chat_template", None)

    def _render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=True)

    def _process(self, text: str, audio: list[np.ndarray] | None) -> dict:
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        out: dict[str, torch.Tensor] = {}
        if audio is not None:
            features = self.feature_extractor(audio, sampling_rate=self.sample_rate, padding="max_length",
                                              return_attention_mask=True, return_tensors="pt")
            lengths = self.model.model.audio_tower._get_feat_extract_output_lengths(
                features["attention_mask"].sum(-1))[1].tolist()
            if ids.count(self.audio_token_id) != len(lengths):
                raise ValueError(f"{ids.count(self.audio_token_id)} audio placeholders for {len(lengths)} audio pieces")
            expanded, k = [], 0
            for t in ids:
                if t == self.audio_token_id:
                    expanded += [t] * int(lengths[k])
                    k += 1
                else:
                    expanded.append(t)
            ids = expanded
            out["input_features"] = features["input_features"]
            out["feature_attention_mask"] = features["attention_mask"]
        out["input_ids"] = torch.tensor([ids])
        out["attention_mask"] = torch.ones_like(out["input_ids"])
        return out

    def _audio_placeholder(self) -> str:
        c = self.model.config
        return "".join(self.tokenizer.convert_ids_to_tokens([c.audio_start_token_id, c.audio_token_id,
                                                             c.audio_end_token_id]))


class CascadeAdapter:
    """The cascade topline: ASR (Whisper from a local folder, salad.evaluation.cascade.WhisperTranscriber; or the oracle
    transcript) then a text LM from a local folder scored on the transcript.

    A base LM (the paper's Qwen2.5-3B/7B) is scored by `salad.evaluation.benchmarks.score_text` (plain continuation
    after the document-start token, as the evaluate stage scores the teacher); a chat LM (`chat=True`) in its chat
    template, the transcript of the whole spoken context as the user turn and the assistant prefix of the text
    context.
    Transcripts are cached by context id (or text) and kept in `transcripts`.
    """

    def __init__(self, baseline: Baseline, path: str | Path, device: str | torch.device | None = None,
                 chat: bool | None = None, asr_model: str | Path | None = None,
                 transcriber: Transcriber | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.baseline = baseline
        self.path = require_folder(path, baseline.hub_id, f"baseline {baseline.name!r} (its LM)")
        self.device = _device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.lm = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True,
                                                       dtype=_dtype(self.device)).to(self.device).eval()
        self.lm.requires_grad_(False)
        self.chat = baseline.chat if chat is None else chat
        if self.chat and getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError(f"{self.path}: chat scoring asked for, but the tokenizer has no chat template")
        if transcriber is None:
            transcriber = make_transcriber(None if asr_model is None else str(asr_model))
        self.transcriber = transcriber
        self.transcripts: dict[str, str] = {}

    def prompt(self, user: str, assistant: str) -> str:
        messages = [{"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + assistant

    @torch.no_grad()
    def _score_lm(self, user_text: str, assistant: str, choices: list[str], plain_context: str) -> list[float]:
        if not self.chat:
            return score_text(self.lm, self.tokenizer, plain_context, choices)
        context_ids, conts = continuation_ids(self.tokenizer, self.prompt(user_text, assistant),
                                              chat_continuations(assistant, choices))
        weight = self.lm.get_input_embeddings().weight
        embeds = self.lm.get_input_embeddings()(torch.tensor(context_ids, device=weight.device))
        return score_continuations(self.lm, embeds, conts)

    def score_text(self, context: str, choices: list[str]) -> list[float]:
        user, assistant = chat_turns(context)
        return self._score_lm(user, assistant, choices, context)

    def transcript(self, speech: Speech, context: str, context_id: str | None = None) -> str:
        spoken = context.strip()
        key = context_id or spoken
        if key not in self.transcripts:
            audio = speech if self.transcriber.needs_audio else None
            self.transcripts[key] = self.transcriber.transcribe(key, spoken, audio).strip()
        return self.transcripts[key]

    def score_speech(self, speech: Speech, context: str, choices: list[str],
                     context_id: str | None = None) -> list[float]:
        transcript = self.transcript(speech, context, context_id)
        return self._score_lm(transcript, chat_turns(context)[1], choices, transcript)

    def describe(self) -> dict:
        return {"path": str(self.path), "chat_template": self.chat, "asr": repr(self.transcriber)}


class _RemoteCodeOnly:
    """A baseline whose checkpoint runs only through hub remote code: constructing it explains why it cannot run."""

    requires: tuple[str, ...] = ()
    """transformers classes the model would need."""
    remote: str = ""
    """What the checkpoint's remote code is."""
    todo: str = ""

    def __init__(self, baseline: Baseline, path: str | Path | None = None, **kwargs):
        import transformers

        self.baseline = baseline
        missing = [name for name in self.requires if not hasattr(transformers, name)]
        if not missing:
            raise NotImplementedError(
                f"transformers {transformers.__version__} now provides {', '.join(self.requires)}: baseline "
                f"{baseline.name!r} ({baseline.hub_id}) can get an adapter in salad.baselines.speech_llms")
        raise ArchitectureUnavailable(
            f"baseline {baseline.name!r} ({baseline.paper_row}, {baseline.hub_id}) cannot be evaluated here: "
            f"transformers {transformers.__version__} has no {' / '.join(missing)} architecture. {self.remote} "
            f"It runs only with trust_remote_code=True, i.e. Python code downloaded from the hub, which this project "
            f"does not execute. To evaluate it: {self.todo}")


class DiVAAdapter(_RemoteCodeOnly):
    requires = ("DiVAModel",)
    remote = ("WillHeld/DiVA-llama-3-v0-8b is a custom DiVAModel (a Whisper encoder, a Whisper decoder run over "
              "learned query tokens and a projection into a Llama 3 decoder) whose config.json maps AutoModel to "
              "modeling code in the hub repo, which also fetches its Whisper and Llama parts by hub id; transformers "
              "ships none of it.")
    todo = ("port DiVAModel into this repository (or wait for transformers to add it) and write an adapter like "
            "Qwen2AudioAdapter, or run the model with its own code elsewhere and write per-item records of the "
            "shape of salad.baselines.speech_llms.score_baseline for the report tables.")


class GLM4VoiceAdapter(_RemoteCodeOnly):
    requires = ("ChatGLMForConditionalGeneration", "WhisperVQEncoder")
    remote = ("THUDM/glm-4-voice-9b is a ChatGLM checkpoint (model_type 'chatglm', modeling_chatglm.py in the hub "
              "repo) that reads speech as discrete tokens from the separate THUDM/glm-4-voice-tokenizer (a "
              "WhisperVQEncoder from the GLM-4-Voice GitHub code); transformers' GlmForCausalLM / Glm4ForCausalLM are "
              "the converted GLM-4 text models and load neither.")
    todo = ("port the ChatGLM decoder and the WhisperVQ speech tokenizer (or convert the checkpoint to a "
            "transformers architecture and add the speech tokenizer), then write an adapter; or run it with its "
            "own code elsewhere and write per-item records of the shape of salad.baselines.speech_llms.score_baseline.")


# ---------------------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Baseline:
    """A baseline of Tables 3 and 5."""

    name: str
    """Registry key (and the record file's name)."""
    paper_row: str
    """The row of Tables 3 / 5 (as in data/paper/published.csv)."""
    hub_id: str
    """The Hugging Face checkpoint the local folder must hold (for the cascade: its LM)."""
    adapter: type = field(repr=False)
    chat: bool = False
    """Scored inside the checkpoint's chat template."""
    asr_hub_id: str | None = None
    """The cascade's ASR checkpoint."""
    paper_hours: float | None = None
    """Speech training data in hours as stated in the paper's text; None: the paper gives it only graphically
    (Figure 1, with Qwen2.5-Omni's hours approximated from its reported audio tokens, footnote 1)."""
    note: str = ""


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("cascade-qwen2.5-3b", "ASR + Qwen2.5-3B", "Qwen/Qwen2.5-3B", CascadeAdapter, chat=False,
             asr_hub_id=WHISPER_REPO, note="topline; base LM, plain continuation as the evaluate stage's teacher"),
    Baseline("cascade-qwen2.5-7b", "ASR + Qwen2.5-7B", "Qwen/Qwen2.5-7B", CascadeAdapter, chat=False,
             asr_hub_id=WHISPER_REPO, note="topline; base LM, plain continuation as the evaluate stage's teacher"),
    Baseline("qwen2-audio-7b-instruct", "Qwen2-Audio-7B", "Qwen/Qwen2-Audio-7B-Instruct", Qwen2AudioAdapter,
             chat=True, note="the paper's baselines are 'mostly instruction-tuned' and scored in their chat template"),
    Baseline("qwen2-audio-7b", "Qwen2-Audio-7B", "Qwen/Qwen2-Audio-7B", Qwen2AudioAdapter, chat=False,
             note="base model: plain continuation (the paper does not say which Qwen2-Audio-7B it used)"),
    Baseline("qwen2.5-omni-7b", "Qwen2.5-Omni-7B", "Qwen/Qwen2.5-Omni-7B", Qwen25OmniAdapter, chat=True),
    Baseline("diva-llama-3.1-8b", "DiVA-Llama3.1-8B", "WillHeld/DiVA-llama-3-v0-8b", DiVAAdapter, chat=True,
             note="paper footnote 6: the released weights look Llama-3.1-8B based"),
    Baseline("glm-4-voice-9b", "GLM-4-Voice-9B", "THUDM/glm-4-voice-9b", GLM4VoiceAdapter, chat=True),
)}


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}") from None


def load_baseline(name: str, path: str | Path, device: str | torch.device | None = None,
                  asr_model: str | Path | None = None, chat: bool | None = None) -> Adapter:
    """The adapter of baseline `name` on the checkpoint in local folder `path` (for a cascade: its LM; `asr_model`
    is its local Whisper folder, None for the oracle transcript). `chat` overrides the registry's choice."""
    baseline = get_baseline(name)
    kwargs: dict[str, Any] = {"device": device, "chat": chat}
    if asr_model is not None:
        if baseline.adapter is not CascadeAdapter:
            raise ValueError(f"asr_model is for the cascade baselines only, not {name!r}")
        kwargs["asr_model"] = asr_model
    return baseline.adapter(baseline, path, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation over the benchmark items


def score_baseline(adapter: Adapter, name: str, items: list, speech_store: ShardedStore | None,
                   modes: tuple[str, ...] = ("text", "speech"), desc: str | None = None) -> list[dict]:
    """Per-item records of `adapter` on `items` ((format, Item, few-shot prefix), the evaluate stage's plan), in the
    evaluate stage's shape: {task, format, mode, id, label, n_choices, scores, acc, acc_norm, acc_bytes, pred,
    pred_norm, pred_bytes}, or {task, format, mode, id, skipped} for a request that does not fit the model.
    Speech mode reads each context's audio from `speech_store` (the synthesize stage's `eval` store)."""
    unknown = set(modes) - {"text", "speech"}
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; modes are 'text' and 'speech'")
    if "speech" in modes and speech_store is None:
        raise ValueError("speech mode needs the speech store of the spoken contexts")
    records = []
    for fmt, item, prefix in tqdm(items, desc=desc or f"baseline {name}", unit="item", mininterval=5):
        context = prefix + item.context
        for mode in modes:
            try:
                if mode == "text":
                    scores = adapter.score_text(context, item.choices)
                else:
                    cid = context_id(item, prefix)
                    if cid not in speech_store:
                        raise ValueError(f"{speech_store.path}: no speech for {item.id!r} ({fmt}, context {cid!r}); "
                                         f"rerun `salad synthesize`")
                    speech = speech_of(speech_store.record(cid), speech_store.array(cid))
                    scores = adapter.score_speech(speech, context, item.choices, context_id=cid)
            except ContextTooLong as e:
                records.append(skipped_record(item, fmt, mode, e))
                continue
            records.append(scored_record(item, fmt, mode, scores))
    return records


def _gaps(name: str, own: dict, reference: dict | None, reference_label: str) -> dict:
    """Table 3 (reference text - own speech) and Table 5 (reference text - own text) gaps by
    `salad.evaluation.benchmarks.benchmark_gaps`, relabelled."""
    if reference is None:
        return {}
    best = {"teacher": {"text": reference}}
    student = {mode: own[mode] for mode in ("text", "speech") if mode in own}
    if student:
        best["student"] = student
    gaps = benchmark_gaps(best)
    out = {}
    for key, table in (("speech", "table3"), ("text", "table5")):
        if key in gaps:
            out[table] = {**gaps[key], "reference": reference_label, "system": f"{name}/{key}"}
    return out


@torch.no_grad()
def evaluate_baseline(params: Params, name: str, model_path: Path, root: Path, speech: Path, out: Path,
                      metrics_path: Path, asr_model: str | Path | None = None, reference: Path | None = None,
                      modes: tuple[str, ...] = ("text", "speech"), limit: int | None = None,
                      device: str | None = None) -> dict:
    """Baseline `name` (a key of `BASELINES`) from local folder `model_path` on the evaluate stage's items.

    Same items, formats, demonstrations and shots as `salad.stages.evaluate.evaluate` (`salad.evaluation.benchmarks.eval_plan` on `params` and
    `root`); speech mode reads the spoken contexts from `speech/eval` (the synthesize stage's output, data/speech).
    `limit`: only the first `limit` items of every task and format (`first_items`). For a cascade, `asr_model` is the
    local Whisper folder (None: `params.evaluate.asr_model`, whose null is the oracle transcript). `reference`: a
    per-item records file (.jsonl) of the baseline's text backbone in text mode (e.g. a cascade's records for the
    Qwen2.5 backbone, or evaluate's teacher.jsonl when the teacher is that backbone) for the Table 3 / Table 5 gaps;
    a cascade's own text mode is its backbone's text accuracy and is the default reference there.

    Writes `out/<name>.jsonl` (records of `score_baseline`), for a cascade `out/<name>_transcripts.jsonl`, and the
    metrics JSON {baseline, paper_row, hub_id, adapter, headline, shots, results: {name: summarize}, best: {name:
    best_formats}, gaps: {table3, table5}} at `metrics_path` (atomic writes); returns the metrics.
    """
    torch.manual_seed(params.seed)
    baseline = get_baseline(name)
    out = Path(out)
    items, shots = eval_plan(params, Path(root))
    if limit is not None:
        items = first_items(items, limit)
    if asr_model is None and baseline.adapter is CascadeAdapter:
        asr_model = params.evaluate.asr_model
    adapter = load_baseline(name, model_path, device=device, asr_model=asr_model)
    store = ShardedStore(Path(speech) / "eval") if "speech" in modes else None
    records = score_baseline(adapter, name, items, store, modes)
    write_jsonl(out / f"{name}.jsonl", records)
    if isinstance(adapter, CascadeAdapter):
        write_jsonl(out / f"{name}_transcripts.jsonl",
                    [{"id": k, "transcript": v} for k, v in adapter.transcripts.items()])
    results = {name: summarize(records)}
    best = best_formats(results)
    ref_best, ref_label = None, None
    if reference is not None:
        ref_records = [r for r in read_jsonl(reference) if r.get("mode") == "text"]
        if not ref_records:
            raise ValueError(f"{reference}: no text-mode records to use as the reference")
        ref_best = best_formats({"reference": summarize(ref_records)})["reference"]["text"]
        ref_label = f"{Path(reference).stem}/text"
    elif isinstance(adapter, CascadeAdapter) and "text" in best.get(name, {}):
        ref_best, ref_label = best[name]["text"], f"{name}/text (its LM on text)"
    gaps = _gaps(name, best.get(name, {}), ref_best, ref_label)
    if isinstance(adapter, CascadeAdapter) and reference is None:
        gaps.pop("table5", None)  # its own text against itself
    metrics = {"baseline": name, "paper_row": baseline.paper_row, "hub_id": baseline.hub_id,
               "asr_hub_id": baseline.asr_hub_id, "adapter": {"class": type(adapter).__name__, **adapter.describe()},
               "headline": HEADLINE, "shots": shots, "modes": list(modes), "limit": limit,
               "results": results, "best": best, "gaps": gaps}
    write_json(metrics_path, metrics)
    return metrics

