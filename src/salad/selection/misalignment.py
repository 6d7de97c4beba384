"""M(c): the misalignment of the Stage I model on the probe documents of cluster c (docs/design.md §6, paper §4.1).

    M(c) = L_DIST of the Stage I model on c's probes = KL(Q(·|w_≤k−1) ‖ P(·|c_≤i)) averaged over the masked positions
           of c's probe documents

with Q the text teacher and P the speech-adapted student, each probe interleaved by the span layouts of Stage I
training. M(c) is measured over several seeded layouts: its value is the mean of the per-layout values and its
standard error is taken over layouts. The KL is the forward KL of docs/design.md §4 whatever divergence training
uses, so M(c), and with it P_target, does not move when the training objective does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from salad.config import TrainConfig
from salad.data.batch import collate
from salad.data.interleave import AlignedDoc, Interleaved, draw_interleaved
from salad.model.speech_lm import SpeechAdaptedLM
from salad.random_streams import stream
from salad.training.objective import kl_per_row

__all__ = ["ClusterMisalignment", "sequence_kl", "cluster_misalignment"]


@dataclass
class ClusterMisalignment:
    """M(c) of every cluster c, with what it was measured on."""

    m: np.ndarray
    """float64 [k]: M(c) in nats per masked position, the mean over layouts."""
    se: np.ndarray
    """float64 [k]: standard error of M(c) over layouts (nan with a single layout)."""
    positions: np.ndarray
    """int [k]: masked positions measured in cluster c, all layouts together."""


@torch.no_grad()
def sequence_kl(model: SpeechAdaptedLM, teacher, doc: AlignedDoc, seq: Interleaved, chunk: int) -> tuple[float, int]:
    """Σ KL(Q‖P) over the masked positions of `seq` (one interleaved sequence of `doc`), and their number."""
    batch = collate([seq], [doc.token_ids], [doc.features], doc.features.shape[1])
    student = model.hidden_states(batch)[batch.masked_rows, batch.masked_pos]
    text = teacher.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state
    rows = kl_per_row(student, text[batch.masked_rows, batch.teacher_pos], model.lm.lm_head, teacher.lm_head, chunk)
    # summed within each chunk, then chunk after chunk: the summation order of L_DIST's sums in training, so M(c)
    # keeps its committed values to the last bit
    return float(sum(rows[lo:lo + chunk].sum() for lo in range(0, len(rows), chunk))), len(rows)


def cluster_misalignment(model: SpeechAdaptedLM, teacher, docs: Sequence[AlignedDoc], clusters: Sequence[int], k: int,
                         layouts: int, seed: int, train: TrainConfig) -> ClusterMisalignment:
    """M(c) for c = 0..k−1 from the probe documents `docs`, `clusters[i]` being the cluster of `docs[i]`.

    Each document is interleaved once per layout (span lengths and length limit of `train`, the Stage I layouts)
    from the seeded stream ("probe-layout", layout, document index). A cluster without probe documents gets
    M(c) = 0: the caller makes sure every cluster has one.
    """
    kl = np.zeros((layouts, k))
    count = np.zeros_like(kl)
    for layout_id in range(layouts):
        for i, (doc, c) in enumerate(tqdm(list(zip(docs, clusters)), desc=f"M(c) layout {layout_id}", unit="doc")):
            rng = stream(seed, "probe-layout", layout_id, i)
            seq = draw_interleaved(doc, rng, train.text_span_words, train.speech_span_words, train.max_len)
            kl_sum, n = sequence_kl(model, teacher, doc, seq, train.kl_chunk)
            kl[layout_id, c] += kl_sum
            count[layout_id, c] += n
    per_layout = kl / np.maximum(count, 1)
    m = per_layout.mean(axis=0)
    se = per_layout.std(axis=0, ddof=1) / np.sqrt(len(per_layout)) if len(per_layout) > 1 else np.full_like(m, np.nan)
    return ClusterMisalignment(m=m, se=se, positions=count.sum(axis=0).astype(int))
