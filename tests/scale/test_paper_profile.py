"""The paper-scale profiles: the paper's numbers, and the SALAD-3B code path run on a tiny local Qwen2 stand-in."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from salad.storage.atomic import write_jsonl
from salad.config import load_params
from salad.data.interleave import draw_layout, interleave
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.stages.teacher import train_teacher
from salad.model.teacher import load_teacher
from salad.training.loop import Dist, build_optimizer, train_step
from salad.training.plan import PlannedBatch
from conftest import make_doc

REPO = Path(__file__).resolve().parents[2]
MIMI_DIM = 512  # Mimi's summed codebook vectors


@pytest.mark.parametrize("name, lm, lrs", [("paper-3b", "Qwen2.5-3B", (1e-3, 5e-5)),
                                            ("paper-7b", "Qwen2.5-7B", (1e-4, 5e-6))])
def test_profiles_hold_the_papers_setup(name, lm, lrs):
    p = load_params(REPO / "params" / f"{name}.yaml")
    assert p.teacher.pretrained.endswith(lm)
    assert (p.train.lr_adapter, p.train.lr_lm) == lrs
    t = p.train
    assert (t.adapter_layers, t.adapter_width, t.adapter_mlp, t.adapter_heads, t.adapter_kv_heads) == (12, 960, 2560,
                                                                                                       15, 5)
    assert t.max_len == 2048 and abs(t.batch_size * t.max_len - 2 ** 20) < 0.05 * 2 ** 20  # ~1M positions a step
    assert (t.tokens, t.warmup_steps, t.decay_fraction, t.weight_decay) == (24_000_000_000, 500, 0.2, 0.1)
    assert p.encode.encoder == "mimi" and p.encode.mimi_codebooks == 8
    assert p.synthesize.tts == "kokoro" and p.synthesize.kokoro_voice.endswith("af_heart.pt")
    assert set(p.evaluate.tasks) == {"storycloze", "mmsu", "obqa", "hellaswag", "arc_challenge", "piqa"}


def test_the_paper_adapter_has_about_122M_parameters():
    cfg = load_params(REPO / "params" / "paper-3b.yaml").train
    adapter = AdapterConfig(feature_dim=MIMI_DIM, lm_hidden=2048, layers=cfg.adapter_layers, width=cfg.adapter_width,
                            heads=cfg.adapter_heads, kv_heads=cfg.adapter_kv_heads, mlp=cfg.adapter_mlp)
    from salad.model.speech_lm import SpeechAdapter
    n = sum(p.numel() for p in SpeechAdapter(adapter).parameters())
    assert 115e6 < n < 125e6, n


def test_the_3b_path_runs_on_a_tiny_qwen2(teacher_dir, tokenizer, tmp_path):
    """teacher stage adopts the LM by path → student with the paper's adapter → one optimizer step, as at 3B."""
    params = load_params(REPO / "params" / "paper-3b.yaml")
    params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher, pretrained=str(teacher_dir),
                                                                     context=128))
    write_jsonl(tmp_path / "prepared" / "test.jsonl", [{"id": "t0", "text": "The quick brown fox jumps."}])
    train_teacher(params, tmp_path / "prepared", tmp_path / "teacher", tmp_path / "live", tmp_path / "teacher.json")

    cfg = dataclasses.replace(params.train, micro_batch_size=1)
    teacher = load_teacher(tmp_path / "teacher")
    adapter = AdapterConfig(feature_dim=MIMI_DIM, lm_hidden=teacher.config.hidden_size, layers=cfg.adapter_layers,
                            width=cfg.adapter_width, heads=cfg.adapter_heads, kv_heads=cfg.adapter_kv_heads,
                            mlp=cfg.adapter_mlp, max_frames=cfg.max_len)
    model = SpeechAdaptedLM.from_teacher(tmp_path / "teacher", adapter)
    optimizer = build_optimizer(model, cfg)
    docs = [make_doc(tokenizer, seed=s, frames_dim=MIMI_DIM)[0] for s in range(2)]
    rng = np.random.default_rng(0)
    seqs = [interleave(d, draw_layout(d.cut_points(), d.n_words, rng), cfg.max_len) for d in docs]
    planned = PlannedBatch("speech", seqs, [0, 1])
    before = model.adapter.output_proj.weight.detach().clone()
    loss, kl, nll = train_step(model, teacher, optimizer, planned, (docs, []), MIMI_DIM, cfg, params.alpha,
                               Dist(0, 1, torch.device("cpu")))
    assert np.isfinite([loss, kl, nll]).all() and kl > 0
    assert not torch.equal(before, model.adapter.output_proj.weight)  # the adapter learned at the paper's rates
