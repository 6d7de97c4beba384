"""The data plan of a training run: which sequences every optimizer step trains on, drawn up front from the seed.

Stage I (`plan_batches`): every step is, with probability `speech_probability`, interleaved speech from D_speech,
else text-only broad text (the corpus mixing of the paper's Stage I). Stage II (`plan_stage2`): every step draws one
of three sources with equal probability: D_speech, D_active (both interleaved) and the text-only corpus.

The whole plan (which documents, which span layouts, step by step) is drawn before training, so the number of
optimizer steps for a budget of sequence positions is known before training, which the learning-rate schedule
needs, and the data order is a pure function of (seed, step): the step index is the data loader's position. The plan
for a smaller budget is a prefix of the plan for a larger one (drawn from the same generator in the same order).

A step holds `batch_size` sequences; under torchrun rank r takes sequences r, r+W, r+2W, ... of every step and runs
its share in micro-batches (`micro_batches`, docs/design.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salad.config import TrainConfig
from salad.data.batch import Batch, collate
from salad.data.interleave import AlignedDoc, Interleaved, draw_interleaved, text_only
from salad.random_streams import stream

SOURCES = ("speech", "active", "text")
"""Stage II's sources, drawn with equal probability for each optimizer step (paper Section 4)."""


@dataclass
class PlannedBatch:
    """The sequences of one optimizer step (all ranks, all micro-batches)."""

    kind: str                   # "speech" or "text"
    seqs: list[Interleaved]
    doc_index: list[int]        # index into the speech or text documents

    @property
    def positions(self) -> int:
        return sum(len(s) for s in self.seqs)

    @property
    def n_masked(self) -> int:
        """Masked positions of the whole step: the normaliser of its loss."""
        return sum(int((s.target >= 0).sum()) for s in self.seqs)


class EpochSampler:
    """Indices drawn without replacement, reshuffled every epoch."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng, self.order, self.i = n, rng, rng.permutation(n), 0

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            if self.i == self.n:
                self.order, self.i = self.rng.permutation(self.n), 0
            out.append(int(self.order[self.i]))
            self.i += 1
        return out


def plan_batches(cfg: TrainConfig, seed: int, speech_docs: list[AlignedDoc], text_docs) -> list[PlannedBatch]:
    """Stage I's steps until the budget of sequence positions is reached (the last step may overshoot it)."""
    if not speech_docs and cfg.speech_probability > 0:
        raise ValueError("no speech documents to train on")
    rng = stream(seed, "train-plan")
    speech_sampler = EpochSampler(len(speech_docs), rng) if speech_docs else None
    text_sampler = EpochSampler(len(text_docs), rng) if text_docs else None
    plan, seen = [], 0
    while seen < cfg.tokens:
        if rng.random() < cfg.speech_probability:
            idx = speech_sampler.take(cfg.batch_size)
            seqs = [draw_interleaved(speech_docs[i], rng, cfg.text_span_words, cfg.speech_span_words, cfg.max_len)
                    for i in idx]
            plan.append(PlannedBatch("speech", seqs, idx))
        else:
            if text_sampler is None:
                raise ValueError("speech_probability < 1 but there are no text documents to mix in")
            idx = text_sampler.take(cfg.batch_size)
            plan.append(PlannedBatch("text", [text_only(text_docs[i], cfg.max_len) for i in idx], idx))
        seen += plan[-1].positions
    return plan


def plan_stage2(cfg: TrainConfig, seed: int, tokens: int, speech_docs: list[AlignedDoc],
                active_docs: list[AlignedDoc], text_docs) -> tuple[list[PlannedBatch], list[str]]:
    """The steps of Stage II until `tokens` positions (the last step may overshoot) and each step's source.

    Speech and active steps are interleaved sequences whose `doc_index` points into `speech_docs + active_docs`
    (so that Stage I's batch assembly serves both); the draws come from their own stream of the seed.
    """
    if not speech_docs or not active_docs:
        raise ValueError(f"Stage II needs D_speech and D_active documents, got {len(speech_docs)} and "
                         f"{len(active_docs)}")
    if len(text_docs) == 0:
        raise ValueError("Stage II needs text-only documents to mix in")
    rng = stream(seed, "stage2-plan")
    pools = {"speech": (speech_docs, 0), "active": (active_docs, len(speech_docs))}
    samplers = {name: EpochSampler(n, rng) for name, n in
                (("speech", len(speech_docs)), ("active", len(active_docs)), ("text", len(text_docs)))}
    plan, sources, seen = [], [], 0
    while seen < tokens:
        source = SOURCES[int(rng.integers(len(SOURCES)))]
        idx = samplers[source].take(cfg.batch_size)
        if source == "text":
            planned = PlannedBatch("text", [text_only(text_docs[i], cfg.max_len) for i in idx], idx)
        else:
            docs, offset = pools[source]
            seqs = [draw_interleaved(docs[i], rng, cfg.text_span_words, cfg.speech_span_words, cfg.max_len)
                    for i in idx]
            planned = PlannedBatch("speech", seqs, [offset + i for i in idx])
        plan.append(planned)
        sources.append(source)
        seen += planned.positions
    return plan, sources


def steps_for_budget(plan: list[PlannedBatch], tokens: int) -> int:
    """Optimizer steps of a run with budget `tokens`: the plan's prefix that first reaches it."""
    seen = 0
    for step, planned in enumerate(plan):
        seen += planned.positions
        if seen >= tokens:
            return step + 1
    raise ValueError(f"budget {tokens} exceeds the plan's {seen} positions")


def micro_batches(planned: PlannedBatch, rank: int, world_size: int, micro_batch_size: int | None) -> list[list[int]]:
    """Indices (into planned.seqs) of this rank's micro-batches: sequences rank, rank+W, ..., in chunks."""
    mine = list(range(rank, len(planned.seqs), world_size))
    size = micro_batch_size or len(mine)
    return [mine[i:i + size] for i in range(0, len(mine), size)]


def batch_for(planned: PlannedBatch, speech_docs, text_docs, feature_dim: int, which: list[int] | None = None) -> Batch:
    """The batch of the step's sequences `which` (all of them by default)."""
    which = range(len(planned.seqs)) if which is None else which
    docs = speech_docs if planned.kind == "speech" else text_docs
    chosen = [docs[planned.doc_index[j]] for j in which]
    return collate([planned.seqs[j] for j in which], [d.token_ids for d in chosen], [d.features for d in chosen],
                   feature_dim)
