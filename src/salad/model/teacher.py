"""The teacher LM: a byte-level BPE tokenizer and a tiny Qwen2-architecture causal LM, or a pretrained one.

The tiny teacher is trained on the pretraining text (salad.stages.teacher). It is saved with `save_pretrained` and
loaded everywhere else with `from_pretrained` (`load_tokenizer`, `load_teacher`), exactly the path Qwen2.5 takes at
paper scale, so nothing downstream knows whether the teacher is 5 M or 3 B parameters.

One tokenization everywhere: the tiny tokenizer is trained and used as a transformers `Qwen2Tokenizer` (Qwen2's NFC
normalizer and split rule, digits one by one), so the folder the teacher stage saves reloads through
`AutoTokenizer.from_pretrained`, as any transformers user would load it, to exactly the tokenizer the teacher was
pretrained with (tests/model/test_tokenizer.py tokenizes every corpus and benchmark before and after the round trip).
Students carry a byte copy of the teacher's tokenizer files and the teacher's identity (`teacher_identity`), which
measure and evaluate check.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

from salad.config import TeacherConfig
from salad.data.tokens import DOC_START, doc_start_id, tokenize


# The files of a tokenizer saved with `save_pretrained` (those present are copied into each student).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "added_tokens.json", "chat_template.jinja")
# Load-time arguments transformers copies into a loaded tokenizer's config; saving them would make the saved bytes
# depend on how (and in which environment) the tokenizer was loaded.
_LOAD_TIME_KEYS = ("local_files_only", "is_local", "name_or_path")


def check_teacher_dir(teacher_dir: Path) -> Path:
    """The teacher folder, or a clear error when it is not a saved teacher (instead of a hub repo-id traceback)."""
    teacher_dir = Path(teacher_dir)
    missing = [name for name in ("config.json", "tokenizer.json") if not (teacher_dir / name).is_file()]
    if missing:
        what = "does not exist" if not teacher_dir.exists() else f"has no {' or '.join(missing)}"
        raise FileNotFoundError(f"teacher folder {teacher_dir} {what}: run the teacher stage first "
                                f"(`.venv/bin/dvc repro teacher`)")
    return teacher_dir


def load_tokenizer(teacher_dir: Path):
    """The teacher's tokenizer as `AutoTokenizer.from_pretrained` loads it, checked against the teacher's model.

    Every id the tokenizer can produce must be a row of the model's embeddings (Qwen2.5 pads its embeddings past the
    vocabulary, so more rows than tokens is fine; fewer is a tokenizer that belongs to another model).
    """
    teacher_dir = check_teacher_dir(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True)
    rows = AutoConfig.from_pretrained(teacher_dir, local_files_only=True).vocab_size
    if len(tokenizer) > rows:
        raise ValueError(f"{teacher_dir}: the tokenizer has {len(tokenizer)} tokens but the model's embeddings have "
                         f"{rows} rows: tokenizer and model belong to different teachers")
    doc_start_id(tokenizer)  # the document-start token must exist
    return tokenizer


def save_tokenizer(tokenizer, out: Path) -> None:
    """`save_pretrained`, without the load-time arguments transformers would copy into tokenizer_config.json."""
    saved = {k: tokenizer.init_kwargs.pop(k) for k in _LOAD_TIME_KEYS if k in tokenizer.init_kwargs}
    try:
        tokenizer.save_pretrained(out)
    finally:
        tokenizer.init_kwargs.update(saved)


def copy_tokenizer(teacher_dir: Path, out: Path) -> None:
    """The teacher's tokenizer files, byte for byte, into `out` (a student's lm/ folder)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (Path(teacher_dir) / name).is_file():
            shutil.copyfile(Path(teacher_dir) / name, out / name)


def teacher_identity(teacher_dir: Path) -> str:
    """A digest of the teacher folder: its config, tokenizer, and each weight file's size and sampled bytes.

    Weight files are sampled (three 1 MiB blocks each), not read whole, so a 6 GB teacher is identified in
    milliseconds; two teachers trained differently differ in every block.
    """
    teacher_dir = check_teacher_dir(teacher_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in teacher_dir.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        size = path.stat().st_size
        digest.update(str(size).encode() + b"\0")
        with open(path, "rb") as f:
            if not path.name.endswith((".safetensors", ".bin")) or size <= 3 * _BLOCK:
                digest.update(f.read())
                continue
            for offset in (0, (size - _BLOCK) // 2, size - _BLOCK):
                f.seek(offset)
                digest.update(f.read(_BLOCK))
    return digest.hexdigest()


_BLOCK = 1 << 20
TEACHER_RECORD = "teacher.json"


def record_teacher(teacher_dir: Path, model_dir: Path) -> None:
    """Write which teacher a student was trained from into the student's folder."""
    (Path(model_dir) / TEACHER_RECORD).write_text(
        json.dumps({"teacher_identity": teacher_identity(teacher_dir)}, indent=2) + "\n")


def check_trained_from(model_dir: Path, teacher_dir: Path) -> None:
    """Refuse to measure or evaluate a student against a teacher it was not trained from."""
    record = Path(model_dir) / TEACHER_RECORD
    if not record.is_file():
        raise FileNotFoundError(f"{record} is missing: {model_dir} does not say which teacher it was trained from; "
                                f"retrain it with this version of salad")
    trained_from = json.loads(record.read_text())["teacher_identity"]
    if trained_from != teacher_identity(teacher_dir):
        raise ValueError(f"{model_dir} was trained from another teacher than {teacher_dir} (identity "
                         f"{trained_from[:12]} recorded, {teacher_identity(teacher_dir)[:12]} found): retrain the "
                         f"student or point the stage at its own teacher")


def load_teacher(teacher_dir: Path, device: torch.device | str = "cpu"):
    """The saved teacher, frozen, in fp32, in eval mode."""
    teacher_dir = check_teacher_dir(teacher_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32, local_files_only=True)
    teacher = teacher.to(device).eval()
    teacher.requires_grad_(False)
    return teacher


def train_tokenizer(texts: list[str], vocab_size: int) -> Qwen2Tokenizer:
    """Byte-level BPE with Qwen2's normalizer and split rule, and the document-start token, as a `Qwen2Tokenizer`.

    The merges are learnt on exactly the pieces `Qwen2Tokenizer` encodes (NFC text split by Qwen2's regex, then
    bytes), and the returned object is the tokenizer `AutoTokenizer.from_pretrained` rebuilds from the saved folder,
    so pretraining and every later stage see the same ids.
    """
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[DOC_START], min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bpe = json.loads(tok.to_str())["model"]
    return Qwen2Tokenizer(vocab=bpe["vocab"], merges=[tuple(m) for m in bpe["merges"]], unk_token=None,
                          bos_token=DOC_START, eos_token=DOC_START, pad_token=DOC_START)


def build_model(cfg: TeacherConfig, vocab_size: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.context, tie_word_embeddings=True, rope_theta=10000.0,
    )
    return Qwen2ForCausalLM(config)


def token_stream(tokenizer, texts: list[str]) -> np.ndarray:
    """All documents as one stream, each opened by the document-start token."""
    return np.concatenate([tokenize(tokenizer, t)[0] for t in texts]).astype(np.int64)


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], max_len: int) -> float:
    """Per-token perplexity of whole documents (each from its document-start token, cut to max_len)."""
    model.eval()
    nll, n = 0.0, 0
    for text in texts:
        ids = torch.from_numpy(tokenize(tokenizer, text)[0][:max_len])[None]
        logits = model(input_ids=ids).logits[0, :-1]
        nll += F.cross_entropy(logits.float(), ids[0, 1:], reduction="sum").item()
        n += ids.shape[1] - 1
    return math.exp(nll / n)


def unigram_perplexity(train_stream: np.ndarray, tokenizer, texts: list[str], vocab_size: int) -> float:
    """Perplexity of an add-one unigram model: the floor any LM must beat."""
    counts = np.bincount(train_stream, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    ids = np.concatenate([tokenize(tokenizer, t)[0][1:] for t in texts])
    return float(math.exp(-logp[ids].mean()))


def load_pretrained(name_or_path: str):
    """(tokenizer, model) of a pretrained causal LM from local files only (a folder, or a name in the local HF cache).

    Nothing is downloaded: a model that is not on this machine is an error that says how to get it here.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=True, dtype=torch.float32)
    except OSError as e:
        raise FileNotFoundError(
            f"teacher.pretrained {name_or_path!r} is not available locally ({e.__class__.__name__}). Download it on a "
            f"machine with hub access (`hf download {name_or_path}`) and copy the HF cache here, or set "
            f"teacher.pretrained to the folder that holds config.json, the weights and the tokenizer.") from None
    doc_start_id(tokenizer)  # the document-start token must exist
    return tokenizer, model
