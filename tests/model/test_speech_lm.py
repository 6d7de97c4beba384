"""The speech-adapted LM on a tiny Qwen2 teacher saved and loaded with from_pretrained, as Qwen2.5 would be."""

import numpy as np
import pytest
import torch

from salad.data.batch import collate
from salad.data.interleave import draw_layout, interleave, text_only
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.model.teacher import load_teacher
from salad.training.loop import loss_sums
from conftest import make_doc


def adapter_config():
    return AdapterConfig(feature_dim=3, lm_hidden=32, layers=1, width=16, heads=2, kv_heads=1, mlp=32)


def batch_of(tokenizer, n=2, speech=True):
    docs = [make_doc(tokenizer, seed=s)[0] for s in range(n)]
    if speech:
        seqs = [interleave(d, draw_layout(d.cut_points(), d.n_words, np.random.default_rng(s)), 200)
                for s, d in enumerate(docs)]
    else:
        seqs = [text_only(d, 200) for d in docs]
    return collate(seqs, [d.token_ids for d in docs], [d.features for d in docs], 3)


def test_text_only_batch_matches_the_plain_lm(teacher_dir, tokenizer):
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_config()).eval()
    b = batch_of(tokenizer, speech=False)
    with torch.no_grad():
        h = model.hidden_states(b)
        ref = model.lm.model(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
    assert torch.allclose(h, ref, atol=1e-6)


def test_student_equal_to_teacher_has_zero_kl_on_text(teacher_dir, tokenizer):
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_config())
    teacher = load_teacher(teacher_dir)
    sums = loss_sums(model, teacher, batch_of(tokenizer, speech=False), chunk=64)
    assert abs(sums.kl.item()) / sums.count < 1e-5


def test_speech_positions_carry_adapter_outputs_and_gradients(teacher_dir, tokenizer):
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_config())
    teacher = load_teacher(teacher_dir)
    b = batch_of(tokenizer)
    assert b.speech_frames.shape[0] > 0
    sums = loss_sums(model, teacher, b, chunk=16)
    ((0.5 * sums.kl + 0.5 * sums.nll) / sums.count).backward()  # the objective at alpha = 0.5
    assert model.adapter.input_proj.weight.grad.abs().sum() > 0
    assert model.lm.model.embed_tokens.weight.grad.abs().sum() > 0
    # speech changes the prediction: the same positions with different frames give a different loss
    b2 = batch_of(tokenizer)
    b2.speech_frames = b2.speech_frames + 1.0
    with torch.no_grad():
        assert loss_sums(model, teacher, b2, chunk=16).kl.item() != pytest.approx(sums.kl.item())


def test_adapter_is_causal_over_frames():
    adapter = SpeechAdapter_eval()
    x = torch.randn(1, 10, 3)
    m = torch.ones(1, 10, dtype=torch.long)
    y1 = adapter(x, m)
    x2 = x.clone()
    x2[0, 6:] += 5.0
    y2 = adapter(x2, m)
    assert torch.allclose(y1[0, :6], y2[0, :6], atol=1e-5)
    assert not torch.allclose(y1[0, 6:], y2[0, 6:], atol=1e-3)


def SpeechAdapter_eval():
    from salad.model.speech_lm import SpeechAdapter
    torch.manual_seed(0)
    return SpeechAdapter(adapter_config()).eval()


def test_save_and_load_round_trip(teacher_dir, tokenizer, tmp_path):
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_config()).eval()
    model.save(tmp_path / "m")
    loaded = SpeechAdaptedLM.load(tmp_path / "m").eval()
    b = batch_of(tokenizer)
    with torch.no_grad():
        assert torch.equal(model.hidden_states(b), loaded.hidden_states(b))


def test_load_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json|lm"):
        SpeechAdaptedLM.load(tmp_path)


def test_features_of_another_dimension_are_a_clear_error(teacher_dir, tokenizer):
    """Features from another encoder (e.g. logmel's 320 against an adapter trained on Mimi's 512) used to fail
    deep inside a matrix product."""
    model = SpeechAdaptedLM.from_teacher(teacher_dir, AdapterConfig(feature_dim=5, lm_hidden=32, layers=1, width=16,
                                                                    heads=2, kv_heads=1, mlp=32))
    with pytest.raises(ValueError, match=r"speech features have dimension 3, but this adapter reads 5"):
        model.hidden_states(batch_of(tokenizer))
