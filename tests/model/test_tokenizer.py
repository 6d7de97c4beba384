"""One tokenization everywhere: the teacher's tokenizer survives its save/reload round trip id for id.

The teacher stage trains the tokenizer in memory and pretrains with it; every later stage reloads the saved folder
with `AutoTokenizer.from_pretrained`. Before this was fixed the reload returned a `Qwen2Tokenizer` with another split
rule and normalizer (" 1999" one token in pretraining, five after the reload). These tests tokenize a sample of every
corpus the pipeline prepares and of every benchmark in every format, before and after the round trip.
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from salad.config import load_params
from salad.data.tokens import tokenize
from salad.evaluation.tasks import TASKS, load_items
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM, load_student
from salad.model.teacher import (build_model, check_trained_from, copy_tokenizer, load_teacher, load_tokenizer,
                                 record_teacher, save_tokenizer, train_tokenizer)
from salad.stages.prepare import prepare
from salad.storage.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[2]
SAMPLE = 150  # documents or items per corpus, benchmark and format


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The default world's prepared splits, and its teacher's tokenizer trained as the teacher stage trains it and
    saved beside a model (so that AutoTokenizer sees model_type qwen2, the case that used to reload differently)."""
    params = load_params(REPO / "params.yaml")
    root = tmp_path_factory.mktemp("tokenizer_world")
    prepare(params, REPO / "data" / "raw", root / "prepared")
    texts = [r["text"] for r in read_jsonl(root / "prepared" / "pretrain.jsonl")][:params.teacher.max_documents]
    trained = train_tokenizer(texts, params.teacher.vocab_size)
    teacher = root / "teacher"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        small = dataclasses.replace(params.teacher, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                                    num_kv_heads=1)
        build_model(small, len(trained)).save_pretrained(teacher)
    save_tokenizer(trained, teacher)
    return root, trained, teacher


def corpus_samples(prepared: Path) -> dict[str, list[str]]:
    out = {}
    for path in sorted(prepared.glob("*.jsonl")):
        records = [r for r in read_jsonl(path) if isinstance(r.get("text"), str)]
        if records:
            step = max(1, len(records) // SAMPLE)
            out[path.stem] = [r["text"] for r in records[::step][:SAMPLE]]
    return out


def benchmark_samples(prepared_root: Path) -> dict[str, list[str]]:
    """Contexts and choices of every task in every format (MMSU from the prepared folder, the others shipped)."""
    out = {}
    for name, task in TASKS.items():
        root = prepared_root if task.eval_file.startswith("data/prepared") else REPO
        for fmt in task.formats:
            items = load_items(name, fmt, root, SAMPLE, seed=0)
            out[f"{name}/{fmt}"] = [s for item in items for s in (item.context, *item.choices)]
    return out


def test_every_corpus_and_benchmark_tokenizes_identically_after_the_save_reload_round_trip(world):
    root, trained, teacher = world
    (root / "data").mkdir(exist_ok=True)
    if not (root / "data" / "prepared").exists():
        (root / "data" / "prepared").symlink_to(root / "prepared")
    reloaded = AutoTokenizer.from_pretrained(teacher)
    samples = {**corpus_samples(root / "prepared"), **benchmark_samples(root)}
    assert {"pretrain", "test", "probe", "web", "speech"} <= set(samples)
    assert {f"{name}/{fmt}" for name, task in TASKS.items() for fmt in task.formats} <= set(samples)
    texts = 0
    for name, strings in samples.items():
        for text in strings:
            ids, offsets = tokenize(trained, text)
            ids_after, offsets_after = tokenize(reloaded, text)
            assert ids.tolist() == ids_after.tolist() and offsets == offsets_after, (name, text[:80])
            texts += 1
    assert texts > 2000


def test_the_reload_is_the_tokenizer_a_transformers_user_gets_and_splits_digits_as_qwen2(world):
    _, trained, teacher = world
    reloaded = AutoTokenizer.from_pretrained(teacher)
    assert type(reloaded).__name__ == type(trained).__name__ == "Qwen2Tokenizer"
    # Qwen2's split rule: one digit a piece, the same in pretraining and after the reload.
    assert trained.tokenize(" 1999") == reloaded.tokenize(" 1999") == ["Ġ", "1", "9", "9", "9"]
    assert load_tokenizer(teacher).get_vocab() == trained.get_vocab()


def test_saved_tokenizer_bytes_do_not_depend_on_how_it_was_loaded(world, tmp_path):
    _, _, teacher = world
    for name, kwargs in (("offline", {"local_files_only": True}), ("online", {"local_files_only": False})):
        save_tokenizer(AutoTokenizer.from_pretrained(teacher, **kwargs), tmp_path / name)
    config = json.loads((tmp_path / "offline" / "tokenizer_config.json").read_text())
    assert not {"local_files_only", "is_local", "name_or_path"} & set(config)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "offline" / f).read_bytes() == (tmp_path / "online" / f).read_bytes() == \
               (teacher / f).read_bytes()


def test_a_student_carries_its_teachers_tokenizer_and_identity(world, tmp_path):
    _, _, teacher = world
    model_dir = tmp_path / "student"
    lm_hidden = load_teacher(teacher).config.hidden_size
    student = SpeechAdaptedLM.from_teacher(teacher, AdapterConfig(feature_dim=4, lm_hidden=lm_hidden, layers=1,
                                                                   width=8, heads=2, kv_heads=1, mlp=16,
                                                                   max_frames=8, output_std=0.02))
    student.save(model_dir)
    copy_tokenizer(teacher, model_dir / "lm")
    record_teacher(teacher, model_dir)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        assert (model_dir / "lm" / f).read_bytes() == (teacher / f).read_bytes()
    check_trained_from(model_dir, teacher)
    assert isinstance(load_student(model_dir, teacher), SpeechAdaptedLM)

    other = tmp_path / "other_teacher"
    other.mkdir()
    for f in teacher.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    weights = other / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight: another teacher
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="trained from another teacher"):
        load_student(model_dir, other)
    (model_dir / "teacher.json").unlink()
    with pytest.raises(FileNotFoundError, match="does not say which teacher"):
        check_trained_from(model_dir, teacher)


def test_a_missing_teacher_folder_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist: run the teacher stage"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no config.json or tokenizer.json"):
        load_teacher(tmp_path / "empty")


def test_a_tokenizer_of_another_model_is_refused(world, tmp_path):
    _, trained, teacher = world
    mismatched = tmp_path / "mismatched"
    params = load_params(REPO / "params.yaml")
    small = dataclasses.replace(params.teacher, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                                num_kv_heads=1)
    build_model(small, len(trained) - 10).save_pretrained(mismatched)
    save_tokenizer(trained, mismatched)
    with pytest.raises(ValueError, match=r"tokenizer has \d+ tokens but the model's embeddings have \d+ rows"):
        load_tokenizer(mismatched)
