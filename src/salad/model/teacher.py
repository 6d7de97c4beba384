"""The teacher LM: a byte-level BPE tokenizer and a tiny Qwen2-architecture causal LM, or a pretrained one.

The tiny teacher is trained on the pretraining text (salad.stages.teacher). It is saved with `save_pretrained` and
loaded everywhere else with `from_pretrained` (`load_teacher`), exactly the path Qwen2.5 takes at paper scale, so
nothing downstream knows whether the teacher is 5 M or 3 B parameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from salad.config import TeacherConfig
from salad.data.documents import DOC_START, doc_start_id, tokenize


def load_teacher(teacher_dir: Path, device: torch.device | str = "cpu"):
    """The saved teacher, frozen, in fp32, in eval mode."""
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).to(device).eval()
    teacher.requires_grad_(False)
    return teacher


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every string is encodable, as with Qwen's tokenizer) with the document-start token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[DOC_START], min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=DOC_START, eos_token=DOC_START,
                                   pad_token=DOC_START, unk_token=None)


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
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=True, dtype=torch.float32)
    except OSError as e:
        raise FileNotFoundError(
            f"teacher.pretrained {name_or_path!r} is not available locally ({e.__class__.__name__}). Download it on a "
            f"machine with hub access (`huggingface-cli download {name_or_path}`) and copy the HF cache here, or set "
            f"teacher.pretrained to the folder that holds config.json, the weights and the tokenizer.") from None
    doc_start_id(tokenizer)  # the document-start token must exist
    return tokenizer, model
