"""Agreement minimal pairs (is/are, was/were, has/have) after real context from held-out documents (issue 20's
measurements; not a pipeline stage).

Each item: up to 25 words of a held-out test or probe document before one of the six forms; the true form against
its counterpart, scored like the harness. The accuracy is reported per form and as the mean of the per-form
accuracies, so a prior for the frequent form does not count as agreement. Run from the project root after
`make repro`:

    .venv/bin/python explorations/agreement_pairs.py --per-form 80

Measured on the default world (the outputs of commit 740bc5d's pipeline; 391 items): teacher text 0.696 ± 0.023 as
the mean of the per-form accuracies (is 0.95, are 0.45, was 0.81, were 0.57, has 0.74, have 0.66: mostly the
prior), student speech 0.505 ± 0.019 (is and was 1.00, are 0.00, were 0.03: the prior alone), chance 0.5.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
from pathlib import Path

import numpy as np
import torch

from common import load_models, three_ways

COUNTERPART = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has"}


def items(docs: list[str], per_form: int, seed: int) -> list[tuple[str, str]]:
    found = collections.defaultdict(list)
    for doc in docs:
        words = doc.split()
        for k in range(8, len(words)):
            if words[k] in COUNTERPART:
                found[words[k]].append((" ".join(words[max(0, k - 25):k]), words[k]))
    rng = random.Random(seed)
    out = []
    for form in sorted(found):
        rng.shuffle(found[form])
        out += found[form][:per_form]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-form", type=int, default=80, help="items per form at most")
    ap.add_argument("--seed", type=int, default=0, help="seed of the item draw")
    args = ap.parse_args()
    models = load_models()
    docs = [json.loads(line)["text"] for name in ("test", "probe")
            for line in Path(f"data/prepared/{name}.jsonl").open()]
    correct = collections.defaultdict(lambda: collections.defaultdict(list))
    with torch.no_grad():
        for context, form in items(docs, args.per_form, args.seed):
            for name, scores in three_ways(models, context, [form, COUNTERPART[form]]).items():
                correct[name][form].append(int(np.argmax(scores) == 0))
    for name, per_form in correct.items():
        rates = {f: (float(np.mean(h)), len(h)) for f, h in sorted(per_form.items())}
        mean = float(np.mean([p for p, _ in rates.values()]))
        se = math.sqrt(sum(p * (1 - p) / n for p, n in rates.values())) / len(rates)
        shown = ", ".join(f"{f} {p:.2f} (n = {n})" for f, (p, n) in rates.items())
        print(f"{name}: {mean:.3f} ± {se:.3f} per-form mean (chance 0.5); {shown}")


if __name__ == "__main__":
    main()
