"""The teacher stage at paper scale: a pretrained LM adopted by name or path, tested on a tiny local Qwen2."""

import json

import pytest
import torch

from salad.storage.atomic import write_jsonl
from salad.config import load_params, params_from_dict
from salad.stages.teacher import train_teacher
from salad.model.teacher import load_teacher


def paper_like_params(pretrained: str):
    raw = {"teacher": {"pretrained": pretrained, "context": 128}}
    return params_from_dict(raw)


def test_a_local_pretrained_lm_becomes_the_teacher(teacher_dir, tmp_path):
    write_jsonl(tmp_path / "prepared" / "test.jsonl", [{"id": "t0", "text": "The quick brown fox jumps."}])
    metrics = train_teacher(paper_like_params(str(teacher_dir)), tmp_path / "prepared", tmp_path / "teacher",
                            tmp_path / "live", tmp_path / "teacher.json")
    original, adopted = load_teacher(teacher_dir), load_teacher(tmp_path / "teacher")
    for (name, a), (_, b) in zip(original.state_dict().items(), adopted.state_dict().items()):
        assert torch.equal(a, b), name
    assert metrics["parameters"] == sum(p.numel() for p in original.parameters())
    assert metrics["test_perplexity"] > 1 and json.loads((tmp_path / "teacher.json").read_text()) == metrics


def test_a_missing_pretrained_lm_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    write_jsonl(tmp_path / "prepared" / "test.jsonl", [{"id": "t0", "text": "x"}])
    with pytest.raises(FileNotFoundError, match="hf download Qwen/Qwen2.5-3B"):
        train_teacher(paper_like_params("Qwen/Qwen2.5-3B"), tmp_path / "prepared", tmp_path / "teacher",
                      tmp_path / "live", tmp_path / "teacher.json")
    assert not (tmp_path / "teacher").exists()


def test_the_default_world_trains_its_own_teacher():
    assert load_params("params.yaml").teacher.pretrained is None


def test_a_tokenizer_without_the_document_start_token_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from salad.data.tokens import doc_start_id

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["some text"] * 3, trainers.BpeTrainer(vocab_size=280, special_tokens=["<unk>"],
                                                                  show_progress=False))
    with pytest.raises(ValueError, match="no '<\\|endoftext\\|>' token"):
        doc_start_id(PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>"))
