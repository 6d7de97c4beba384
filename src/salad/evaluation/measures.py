"""The measures of docs/design.md §4: misalignment M and forgetting F of a speech-adapted model on held-out documents.

    M = mean over masked positions of KL( P(·|w_≤k−1) ‖ P(·|c_≤i) )   the student against itself, text vs speech
    F = mean over text positions of   KL( Q(·|w) ‖ P(·|w) )              the teacher against the student, on text

Both in nats per token, with the forward KL of salad.training.objective (the fixed definition of M and F), and on
fixed interleavings: layout l of document j is drawn from stream(seed, "measure-layout", l, j), so every model (the
main run's, the grid's, Stage II's) is measured on the same sequences. Diagnostics beyond the paper make the use of
speech content visible at small scale: M with shuffled speech (frames of another document, same frame count; zero
frames would be off-distribution and mislead), and M restricted to the first 1 and 3 text tokens after each speech
span, each with a paired standard error over `layouts` span layouts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from salad.config import Params
from salad.data.batch import collate
from salad.data.interleave import AlignedDoc, Interleaved, draw_interleaved, text_only
from salad.model.speech_lm import SpeechAdaptedLM
from salad.random_streams import stream
from salad.training.objective import kl_per_row, kl_rows


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
def text_hidden_states(lm, docs: list[AlignedDoc], length: int) -> torch.Tensor:
    """The LM's final hidden states on the first `length` tokens of each document's text w, right-padded.

    Every layout of a document, and its shuffled-speech control, asks about the same w: one pass serves them all.
    """
    ids = torch.zeros(len(docs), length, dtype=torch.long)
    mask = torch.zeros(len(docs), length, dtype=torch.long)
    for b, d in enumerate(docs):
        n = min(length, len(d.token_ids))
        ids[b, :n] = torch.from_numpy(np.asarray(d.token_ids[:n], dtype=np.int64))
        mask[b, :n] = 1
    return lm.model(input_ids=ids, attention_mask=mask).last_hidden_state


@torch.no_grad()
def misalignment_rows(model: SpeechAdaptedLM, docs: list[AlignedDoc], seqs: list[Interleaved], chunk: int,
                      text_hidden: torch.Tensor | None = None) -> torch.Tensor:
    """KL(P(·|w) ‖ P(·|c)) at every masked position of the batch (`text_hidden`: the documents' precomputed
    `text_hidden_states`, long enough for every masked position's k−1)."""
    batch = collate(seqs, [d.token_ids for d in docs], [d.features for d in docs], docs[0].features.shape[1])
    p_speech = model.hidden_states(batch)[batch.masked_rows, batch.masked_pos]
    if text_hidden is None:
        text_hidden = text_hidden_states(model.lm, docs, batch.text_ids.shape[1])
    p_text = text_hidden[batch.masked_rows, batch.teacher_pos]
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


def measure_model(params: Params, teacher, model: SpeechAdaptedLM, docs: list[AlignedDoc],
                  controls: bool = True) -> dict:
    """M (with its diagnostics and paired standard errors) and F of `model` on `docs`; `controls`: also M with
    shuffled speech and its paired differences (doubles the cost of M)."""
    cfg, tcfg = params.measure, params.train
    docs_shuffled = shuffled(docs)

    kls, nll_p, nll_q = [], [], []
    for lo in range(0, len(docs), cfg.batch_size):
        k, p, q = forgetting_rows(model, teacher, docs[lo:lo + cfg.batch_size], tcfg.max_len, tcfg.kl_chunk)
        kls.append(k), nll_p.append(p), nll_q.append(q)
    forgetting = float(torch.cat(kls).mean())

    # Documents outside, layouts inside: the text pass of a batch of documents is shared by all its layouts.
    real, shuf, dist = ([[] for _ in range(cfg.layouts)] for _ in range(3))
    for lo in tqdm(range(0, len(docs), cfg.batch_size), desc="measure M", unit="batch"):
        chunk_docs = docs[lo:lo + cfg.batch_size]
        layouts = []
        for layout_id in range(cfg.layouts):
            seqs = []
            for j, d in enumerate(chunk_docs):
                rng = stream(params.seed, "measure-layout", layout_id, lo + j)
                seqs.append(draw_interleaved(d, rng, tcfg.text_span_words, tcfg.speech_span_words, tcfg.max_len))
            layouts.append(seqs)
        length = max(int(s.teacher_pos.max()) + 1 for seqs in layouts for s in seqs if (s.teacher_pos >= 0).any())
        text_hidden = text_hidden_states(model.lm, chunk_docs, length)
        for layout_id, seqs in enumerate(layouts):
            real[layout_id].append(misalignment_rows(model, chunk_docs, seqs, tcfg.kl_chunk, text_hidden))
            if controls:
                shuf[layout_id].append(misalignment_rows(model, docs_shuffled[lo:lo + cfg.batch_size], seqs,
                                                         tcfg.kl_chunk, text_hidden))
            dist[layout_id].append(np.concatenate([tokens_after_speech(s) for s in seqs]))

    keys = ("M", "M_first1", "M_first3") + (("M_shuffled", "M_shuffled_first1", "M_shuffled_first3") if controls else ())
    per_layout = {key: [] for key in keys}
    for layout_id in range(cfg.layouts):
        d = np.concatenate(dist[layout_id])
        first1, first3 = d == 0, d <= 2
        named = {"M": torch.cat(real[layout_id]).numpy()}
        if controls:
            named["M_shuffled"] = torch.cat(shuf[layout_id]).numpy()
        for name, values in named.items():
            per_layout[name].append(values.mean())
            per_layout[f"{name}_first1"].append(values[first1].mean())
            per_layout[f"{name}_first3"].append(values[first3].mean())

    metrics: dict = {"F": forgetting, "documents": len(docs), "layouts": cfg.layouts}
    for key, values in per_layout.items():
        m, se = mean_se(values)
        metrics[key], metrics[f"{key}_se"] = m, se
    for span in ("", "_first1", "_first3") if controls else ():
        diff = np.subtract(per_layout[f"M{span}"], per_layout[f"M_shuffled{span}"])
        m, se = mean_se(list(diff))
        metrics[f"M{span}_minus_shuffled"], metrics[f"M{span}_minus_shuffled_se"] = m, se
    metrics["teacher_text_perplexity"] = round(math.exp(float(torch.cat(nll_q).mean())), 3)
    metrics["student_text_perplexity"] = round(math.exp(float(torch.cat(nll_p).mean())), 3)
    return metrics
