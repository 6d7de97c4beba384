"""M(c) (docs/design.md §6): the forward KL of the Stage I model on each cluster's probes, over seeded layouts."""

import dataclasses

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from conftest import make_doc
from salad.config import TrainConfig
from salad.data.batch import collate
from salad.data.interleave import draw_interleaved
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.random_streams import stream
from salad.selection.misalignment import cluster_misalignment, sequence_kl
from salad.training.objective import distillation_sums, kl_rows

TRAIN = TrainConfig(max_len=200, text_span_words=(4, 8), speech_span_words=(3, 6), kl_chunk=16)


def models(teacher_dir):
    torch.manual_seed(0)
    student = SpeechAdaptedLM.from_teacher(teacher_dir, AdapterConfig(feature_dim=3, lm_hidden=32, layers=1, width=16,
                                                                      heads=2, kv_heads=1, mlp=32)).eval()
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    return student, teacher


def probe_docs(tokenizer, n=5):
    return [dataclasses.replace(make_doc(tokenizer, seed=s)[0], id=f"p{s}") for s in range(n)]


def test_sequence_kl_is_the_forward_kl_summed_as_in_training(teacher_dir, tokenizer):
    student, teacher = models(teacher_dir)
    doc = probe_docs(tokenizer, 1)[0]
    seq = draw_interleaved(doc, np.random.default_rng(0), TRAIN.text_span_words, TRAIN.speech_span_words, 200)
    kl_sum, n = sequence_kl(student, teacher, doc, seq, chunk=16)
    batch = collate([seq], [doc.token_ids], [doc.features], 3)
    with torch.no_grad():
        p = student.hidden_states(batch)[batch.masked_rows, batch.masked_pos]
        q = teacher.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state
        q = q[batch.masked_rows, batch.teacher_pos]
        sums = distillation_sums(p, q, batch.target_ids, student.lm.lm_head, teacher.lm_head, chunk=16)
        whole = kl_rows(teacher.lm_head(q), student.lm.lm_head(p)).sum()
    assert n == sums.count == len(batch.target_ids) > 16  # several chunks
    assert kl_sum == float(sums.kl)  # the same floats in the same order as the training path's forward KL
    assert np.isclose(kl_sum, float(whole), rtol=1e-5)


def test_cluster_misalignment_is_seeded_per_cluster_and_ignores_the_training_divergence(teacher_dir, tokenizer):
    student, teacher = models(teacher_dir)
    docs, clusters = probe_docs(tokenizer), [0, 1, 0, 2, 1]
    mis = cluster_misalignment(student, teacher, docs, clusters, 3, layouts=2, seed=0, train=TRAIN)
    assert mis.m.shape == mis.se.shape == mis.positions.shape == (3,)
    assert np.all(mis.m > 0) and np.all(np.isfinite(mis.se)) and np.all(mis.positions > 0)
    again = cluster_misalignment(student, teacher, docs, clusters, 3, layouts=2, seed=0, train=TRAIN)
    assert np.array_equal(mis.m, again.m) and np.array_equal(mis.se, again.se)
    other_seed = cluster_misalignment(student, teacher, docs, clusters, 3, layouts=2, seed=1, train=TRAIN)
    assert not np.array_equal(mis.m, other_seed.m)
    reverse = cluster_misalignment(student, teacher, docs, clusters, 3, layouts=2, seed=0,
                                   train=dataclasses.replace(TRAIN, divergence="reverse_kl"))
    assert np.array_equal(mis.m, reverse.m)
    one = cluster_misalignment(student, teacher, docs, clusters, 3, layouts=1, seed=0, train=TRAIN)
    assert np.all(np.isnan(one.se))
    # one layout of cluster 2 is its single document's mean KL over that layout's masked positions
    seq = draw_interleaved(docs[3], stream(0, "probe-layout", 0, 3),
                           TRAIN.text_span_words, TRAIN.speech_span_words, TRAIN.max_len)
    kl_sum, n = sequence_kl(student, teacher, docs[3], seq, TRAIN.kl_chunk)
    assert one.m[2] == kl_sum / n and one.positions[2] == n
