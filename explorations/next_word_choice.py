"""Next-word choice against frequency-matched distractors, on the held-out broad test documents (issue 20's
measurements; not a pipeline stage).

Each item: 10–30 words of a held-out document as context; the true next word against 3 words of the same log2
frequency-rank band of the teacher's pretraining text. Scored like the harness (summed log-likelihood of " word",
argmax): the teacher in text, the Stage I student in text, and the student in speech (the whole context spoken in
the fixed voice and encoded by the configured encoder). Run from the project root after `make repro`:

    .venv/bin/python explorations/next_word_choice.py --items 400 --seed 1

Measured on the default world (the outputs of commit 740bc5d's pipeline): teacher text 0.588 ± 0.025, student text
0.578 ± 0.025, student speech 0.273 ± 0.022 (n = 400, chance 0.25).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import torch

from common import load_models, three_ways


def frequency_bands(pretrain: Path) -> tuple[dict[str, int], dict[int, list[str]]]:
    """Each word of the pretraining text seen 3 times or more -> its log2 frequency-rank band, and the bands."""
    counts = collections.Counter(w for line in pretrain.open() for w in re.findall(r"[a-z]+", json.loads(line)["text"].lower()))
    ranked = sorted((w for w, c in counts.items() if c >= 3), key=lambda w: (-counts[w], w))
    band = {w: int(math.log2(1 + r)) for r, w in enumerate(ranked)}
    bands = collections.defaultdict(list)
    for w, b in band.items():
        bands[b].append(w)
    return band, bands


def items(docs: list[str], band: dict[str, int], bands: dict[int, list[str]], n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        words = rng.choice(docs).split()
        k = rng.randint(10, 30)
        if k >= len(words) or not re.fullmatch(r"[a-z]+", words[k]) or words[k] not in band:
            continue
        pool = [w for w in bands[band[words[k]]] if w != words[k]]
        if len(pool) < 3:
            continue
        choices = [words[k], *rng.sample(pool, 3)]
        rng.shuffle(choices)
        out.append((" ".join(words[:k]), choices, choices.index(words[k])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=400, help="number of items")
    ap.add_argument("--seed", type=int, default=1, help="seed of the item draw")
    args = ap.parse_args()
    models = load_models()
    band, bands = frequency_bands(Path("data/prepared/pretrain.jsonl"))
    docs = [json.loads(line)["text"] for line in Path("data/prepared/test.jsonl").open()]
    correct = collections.defaultdict(list)
    with torch.no_grad():
        for context, choices, label in items(docs, band, bands, args.items, args.seed):
            for name, scores in three_ways(models, context, choices).items():
                correct[name].append(int(np.argmax(scores) == label))
    for name, hits in correct.items():
        p = float(np.mean(hits))
        print(f"{name}: {p:.3f} ± {math.sqrt(p * (1 - p) / len(hits)):.3f} (n = {len(hits)}, chance 0.25)")


if __name__ == "__main__":
    main()
