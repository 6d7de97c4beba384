"""The miniature family's word-level tasks scored three ways (teacher text, student text, student speech), on the
items `prepare` wrote under data/prepared/family/ (issue 20's encoder comparison; not a pipeline stage).

Run from a project root holding a pipeline's outputs (params.yaml's encoder is the one the student was trained
with):

    .venv/bin/python explorations/family_three_ways.py --items 200
    .venv/bin/python explorations/family_three_ways.py --items 200 --random --tasks agreement next_word_broad world_qa

Each task's first `--items` items (their file order), or with `--random` a seeded random sample of them (numpy
default_rng(0), a permutation's first `--items`: the same items for every tree built from the same prepare),
scored like the harness (summed log-likelihood, argmax); agreement also per form.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from common import load_models, three_ways


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200, help="items per task")
    ap.add_argument("--family", type=Path, default=Path("data/prepared/family"), help="the family's folder")
    ap.add_argument("--tasks", nargs="+", default=["next_word_broad", "next_word_book", "agreement"])
    ap.add_argument("--random", action="store_true", help="a seeded random sample instead of the first items")
    args = ap.parse_args()
    models = load_models()
    for task in args.tasks:
        records = [json.loads(line) for line in (args.family / f"{task}.jsonl").open()]
        if args.random:
            records = [records[i] for i in np.random.default_rng(0).permutation(len(records))[:args.items]]
        else:
            records = records[:args.items]
        hits: dict[str, list[int]] = {}
        with torch.no_grad():
            for r in records:
                context = r.get("context") or f"Question: {r['question']}\nAnswer:"
                choices = r.get("choices") or r["options"]
                for name, scores in three_ways(models, context, choices).items():
                    hits.setdefault(name, []).append(int(np.argmax(scores) == r["label"]))
        chance = float(np.mean([1 / len(r.get("choices") or r["options"]) for r in records]))
        for name, h in hits.items():
            p = float(np.mean(h))
            print(f"{task} {name}: {p:.3f} ± {math.sqrt(p * (1 - p) / len(h)):.3f} (n = {len(h)}, chance {chance:.2f})",
                  flush=True)
            if task == "agreement":  # ids end in the correct form: a prior for one form shows here
                forms = {}
                for r, hit in zip(records, h):
                    forms.setdefault(r["id"].rsplit("-", 1)[1], []).append(hit)
                print("  " + ", ".join(f"{f} {np.mean(v):.2f}" for f, v in forms.items()), flush=True)


if __name__ == "__main__":
    main()
