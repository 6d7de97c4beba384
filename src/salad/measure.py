"""The `measure` stage: misalignment M and forgetting F on held-out broad-domain documents (DESIGN §4).

    M = mean over masked positions of KL( P(·|w_≤k−1) ‖ P(·|c_≤i) )   the student against itself, text vs speech
    F = mean over text positions of   KL( Q(·|w) ‖ P(·|w) )              the teacher against the student, on text

Both in nats per token, with fixed interleaving seeds. Diagnostics beyond the paper make the use of speech content
visible at small scale: M with shuffled speech (frames of another document, same frame count; zero frames would
be off-distribution and mislead), and M restricted to the first 1 and 3 text tokens after each speech span, each
with a paired standard error over `layouts` span layouts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoTokenizer

from salad.atomic import write_json
from salad.batch import collate
from salad.config import Params
from salad.corpus import load_aligned
from salad.interleave import AlignedDoc, Interleaved, draw_layout, interleave, text_only
from salad.losses import kl_per_row, kl_rows
from salad.model import SpeechAdaptedLM
from salad.train import load_teacher


def tokens_after_speech(seq: Interleaved) -> np.ndarray:
    """For each masked position i: i minus the position of the last speech frame at or before i (inf if none).

    0 marks the first text token after a span (predicted from the span's last frame), 1 the second, and so on."""
    is_speech = seq.input_ids < 0
    last = np.where(is_speech, np.arange(len(seq)), -1)
    last = np.maximum.accumulate(last)
    dist = np.where(last >= 0, np.arange(len(seq)) - last, np.inf)
    return dist[seq.target >= 0]


def shuffled(docs: list[AlignedDoc]) -> list[AlignedDoc]:
    """Each document with the frames of the next document, tiled or cut to its own frame count."""
    out = []
    for j, d in enumerate(docs):
        other = docs[(j + 1) % len(docs)].features
        out.append(AlignedDoc(d.id, d.token_ids, d.token_word, d.word_times, np.resize(other, d.features.shape)))
    return out


@torch.no_grad()
def misalignment_rows(model: SpeechAdaptedLM, docs: list[AlignedDoc], seqs: list[Interleaved], chunk: int) -> torch.Tensor:
    """KL(P(·|w) ‖ P(·|c)) at every masked position of the batch."""
    batch = collate(seqs, [d.token_ids for d in docs], [d.features for d in docs], docs[0].features.shape[1])
    p_speech = model.hidden_states(batch)[batch.masked_rows, batch.masked_pos]
    p_text = model.lm.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state
    p_text = p_text[batch.masked_rows, batch.teacher_pos]
    head = model.lm.lm_head
    return kl_per_row(p_speech, p_text, head, head, chunk)


@torch.no_grad()
def forgetting_rows(model: SpeechAdaptedLM, teacher, docs: list[AlignedDoc], max_len: int, chunk: int):
    """KL(Q(·|w) ‖ P(·|w)) at every text position, plus both models' NLL of the next token (one logits pass)."""
    seqs = [text_only(d, max_len) for d in docs]
    batch = collate(seqs, [d.token_ids for d in docs], [None] * len(docs), 1)
    rows, pos = batch.masked_rows, batch.masked_pos
    p = model.lm.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state[rows, pos]
    q = teacher.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state[rows, pos]
    kl, nll_p, nll_q = [], [], []
    for lo in range(0, p.shape[0], chunk):  # logits of `chunk` rows at a time, each computed once
        p_logits = model.lm.lm_head(p[lo:lo + chunk]).float()
        q_logits = teacher.lm_head(q[lo:lo + chunk]).float()
        targets = batch.target_ids[lo:lo + chunk]
        kl.append(kl_rows(q_logits, p_logits))
        nll_p.append(F.cross_entropy(p_logits, targets, reduction="none"))
        nll_q.append(F.cross_entropy(q_logits, targets, reduction="none"))
    return torch.cat(kl), torch.cat(nll_p), torch.cat(nll_q)


def mean_se(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def measure(params: Params, teacher_dir: Path, model_dir: Path, speech: Path, features: Path, metrics_path: Path) -> dict:
    cfg, tcfg = params.measure, params.train
    torch.manual_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = load_teacher(teacher_dir)
    model = SpeechAdaptedLM.load(model_dir).eval()
    docs = load_aligned(speech / "test", features / "test", tokenizer)
    docs_shuffled = shuffled(docs)

    kls, nll_p, nll_q = [], [], []
    for lo in range(0, len(docs), cfg.batch_size):
        k, p, q = forgetting_rows(model, teacher, docs[lo:lo + cfg.batch_size], tcfg.max_len, tcfg.kl_chunk)
        kls.append(k), nll_p.append(p), nll_q.append(q)
    forgetting = float(torch.cat(kls).mean())

    per_layout = {key: [] for key in ("M", "M_shuffled", "M_first1", "M_first3", "M_shuffled_first1", "M_shuffled_first3")}
    for layout_id in tqdm(range(cfg.layouts), desc="measure M", unit="layout"):
        real, shuf, dist = [], [], []
        for lo in range(0, len(docs), cfg.batch_size):
            chunk_docs = docs[lo:lo + cfg.batch_size]
            seqs = []
            for j, d in enumerate(chunk_docs):
                rng = np.random.default_rng([params.seed, 7, layout_id, lo + j])
                layout = draw_layout(d.cut_points(), d.n_words, rng, tcfg.text_span_words, tcfg.speech_span_words)
                seqs.append(interleave(d, layout, tcfg.max_len))
            real.append(misalignment_rows(model, chunk_docs, seqs, tcfg.kl_chunk))
            shuf.append(misalignment_rows(model, docs_shuffled[lo:lo + cfg.batch_size], seqs, tcfg.kl_chunk))
            dist.append(np.concatenate([tokens_after_speech(s) for s in seqs]))
        real, shuf, dist = torch.cat(real).numpy(), torch.cat(shuf).numpy(), np.concatenate(dist)
        first1, first3 = dist == 0, dist <= 2
        per_layout["M"].append(real.mean())
        per_layout["M_shuffled"].append(shuf.mean())
        per_layout["M_first1"].append(real[first1].mean())
        per_layout["M_first3"].append(real[first3].mean())
        per_layout["M_shuffled_first1"].append(shuf[first1].mean())
        per_layout["M_shuffled_first3"].append(shuf[first3].mean())

    metrics: dict = {"alpha": params.alpha, "F": forgetting, "documents": len(docs), "layouts": cfg.layouts}
    for key, values in per_layout.items():
        m, se = mean_se(values)
        metrics[key], metrics[f"{key}_se"] = m, se
    for span in ("", "_first1", "_first3"):
        diff = np.subtract(per_layout[f"M{span}"], per_layout[f"M_shuffled{span}"])
        m, se = mean_se(list(diff))
        metrics[f"M{span}_minus_shuffled"], metrics[f"M{span}_minus_shuffled_se"] = m, se
    metrics["teacher_text_perplexity"] = round(math.exp(float(torch.cat(nll_q).mean())), 3)
    metrics["student_text_perplexity"] = round(math.exp(float(torch.cat(nll_p).mean())), 3)
    write_json(metrics_path, metrics)
    return metrics
