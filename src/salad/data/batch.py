"""Padding a list of interleaved sequences into one model batch, with the masked positions gathered.

Masked positions (next element is text) are listed row-major as (row, position in c, target token, position k−1
in w), so the loss only ever touches those rows of the hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from salad.data.interleave import Interleaved


@dataclass
class Batch:
    input_ids: torch.Tensor       # [B, T] token ids, 0 at speech and padding positions
    attention_mask: torch.Tensor  # [B, T]
    speech_frames: torch.Tensor   # [S, L, feat_dim] every speech span of the batch, right-padded
    speech_mask: torch.Tensor     # [S, L]
    speech_dest: torch.Tensor     # [S, 2] (row in batch, position in c of the span's first frame)
    target_ids: torch.Tensor      # [N] token w_k for every masked position, row-major order
    masked_rows: torch.Tensor     # [N] batch row of each masked position
    masked_pos: torch.Tensor      # [N] position i in c
    teacher_pos: torch.Tensor     # [N] position k−1 in w
    text_ids: torch.Tensor        # [B, Tw] w, padded with 0
    text_mask: torch.Tensor       # [B, Tw]

    @property
    def positions(self) -> int:
        """Sequence positions (text tokens + speech frames) without padding: the unit of training budgets."""
        return int(self.attention_mask.sum())

    @property
    def n_masked(self) -> int:
        return int(self.target_ids.shape[0])


def collate(
    seqs: list[Interleaved],
    token_ids: list[np.ndarray],
    features: list[np.ndarray | None],
    feature_dim: int,
) -> Batch:
    """Pad sequences c (and their text sequences w) and gather their speech spans and masked positions."""
    if not seqs:
        raise ValueError("empty batch")
    B = len(seqs)
    T = max(len(s) for s in seqs)
    input_ids = np.zeros((B, T), dtype=np.int64)
    attention = np.zeros((B, T), dtype=np.int64)
    spans, dest = [], []
    rows, pos, tpos, targets = [], [], [], []
    # w only needs to reach the last position the teacher is asked about
    w_len = [int(s.teacher_pos.max()) + 1 if (s.teacher_pos >= 0).any() else 1 for s in seqs]
    Tw = max(w_len)
    text_ids = np.zeros((B, Tw), dtype=np.int64)
    text_mask = np.zeros((B, Tw), dtype=np.int64)
    for b, (s, w, f) in enumerate(zip(seqs, token_ids, features)):
        n = len(s)
        input_ids[b, :n] = np.where(s.input_ids >= 0, s.input_ids, 0)
        attention[b, :n] = 1
        for p, f0, f1 in s.speech_spans:
            if f is None:
                raise ValueError(f"document {s.doc_id}: speech span without features")
            spans.append(f[f0:f1])
            dest.append((b, p))
        m = np.nonzero(s.target >= 0)[0]
        rows.append(np.full(len(m), b))
        pos.append(m)
        tpos.append(s.teacher_pos[m])
        targets.append(w[s.target[m]])
        text_ids[b, :w_len[b]] = w[:w_len[b]]
        text_mask[b, :w_len[b]] = 1
    L = max((len(x) for x in spans), default=0)
    frames = np.zeros((len(spans), L, feature_dim), dtype=np.float32)
    smask = np.zeros((len(spans), L), dtype=np.int64)
    for j, x in enumerate(spans):
        frames[j, :len(x)] = x
        smask[j, :len(x)] = 1
    t = torch.from_numpy
    return Batch(
        input_ids=t(input_ids), attention_mask=t(attention),
        speech_frames=t(frames), speech_mask=t(smask),
        speech_dest=t(np.array(dest, dtype=np.int64).reshape(-1, 2)),
        target_ids=t(np.concatenate(targets).astype(np.int64)),
        masked_rows=t(np.concatenate(rows).astype(np.int64)),
        masked_pos=t(np.concatenate(pos).astype(np.int64)),
        teacher_pos=t(np.concatenate(tpos).astype(np.int64)),
        text_ids=t(text_ids), text_mask=t(text_mask),
    )
