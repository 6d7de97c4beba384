"""Named random streams: the pipeline's seeded draws of data plans, layouts and samples come from
`stream(seed, name, *keys)`.

Each stream is numpy's generator seeded with `[seed, code, *keys]`, so streams are independent of each other and of
the order in which stages run, and one stream can be re-drawn alone (a document's layout in `measure` does not
depend on how many documents came before it when `keys` name the document). The codes are part of the results:
changing one changes every number drawn from that stream, so they are fixed here, once, and never reused.

A few seeded draws predate the streams and keep their own seeding, because re-seeding them would change every
result downstream (docs/design.md §10 lists them): the teacher's pretraining windows, the data splits, each
document's voice and rate, the selection draw, the k-means start and the aligner's dither.
"""

from __future__ import annotations

import numpy as np

STREAMS: dict[str, int] = {
    "train-plan": 1,              # Stage I: speech-or-text per step, documents, span layouts
    "stage2-plan": 2,             # Stage II: source per step, documents, span layouts
    "measure-layout": 7,          # M and F: the span layout of a held-out document (keys: layout, document)
    "probe-layout": 8,            # M(c): the span layout of a cluster's probe (keys: layout, document)
    "broad-sample": 11,           # D_broad: which web documents the grid's broad side synthesizes
    "selection-pool": 13,         # active selection: which web documents form the clustered pool
    "probe-choice": 17,           # active selection: which documents of a cluster are its probes
}
"""Stream name → its fixed code."""


def stream(seed: int, name: str, *keys: int) -> np.random.Generator:
    """The generator of stream `name` for the run seed `seed` (and per-item `keys`, e.g. layout and document)."""
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; the streams are {sorted(STREAMS)}")
    return np.random.default_rng([seed, STREAMS[name], *keys])
