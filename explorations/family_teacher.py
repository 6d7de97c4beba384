"""The teacher's text accuracy on every task of the miniature family, all items, zero-shot (issue 20 item 1's bar,
and its check at a second seed of the whole world; not a pipeline stage).

Run from a project root after `make repro`, or on a second world: a work tree whose params.yaml differs only in
`seed`, where `salad prepare` and `salad teacher` have run (2026-12-07: about 8 minutes on 2 cores):

    mkdir -p /tmp/seed1/data && sed 's/^seed: 0/seed: 1/' params.yaml > /tmp/seed1/params.yaml
    ln -s "$PWD/data/raw" /tmp/seed1/data/raw && S="$PWD/.venv/bin/salad"
    (cd /tmp/seed1 && $S prepare --raw data/raw --out data/prepared &&
     $S teacher --prepared data/prepared --out data/models/teacher --live dvclive/teacher --metrics metrics/teacher.json)
    .venv/bin/python explorations/family_teacher.py --root /tmp/seed1

Scored like the harness (summed log-likelihood, argmax: the family's stated metric, acc), without demonstrations;
agreement also per form (its items are balanced over the six forms). What it measured is in explorations/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from salad.data.world import QUESTION_FORMAT
from salad.evaluation.benchmarks import score_text
from salad.model.teacher import load_teacher, load_tokenizer

TASKS = ("next_word_broad", "next_word_book", "agreement", "world_qa")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="a tree holding data/prepared and data/models/teacher")
    args = ap.parse_args()
    teacher_dir = args.root / "data" / "models" / "teacher"
    tokenizer, teacher = load_tokenizer(teacher_dir), load_teacher(teacher_dir).eval()
    for task in TASKS:
        records = [json.loads(line) for line in (args.root / "data" / "prepared" / "family" / f"{task}.jsonl").open()]
        hits = []
        with torch.no_grad():
            for r in records:
                context = r.get("context") or QUESTION_FORMAT.format(question=r["question"])
                scores = score_text(teacher, tokenizer, context, r.get("choices") or r["options"])
                hits.append(int(np.argmax(scores) == r["label"]))
        p = float(np.mean(hits))
        chance = float(np.mean([1 / len(r.get("choices") or r["options"]) for r in records]))
        print(f"{task}: {p:.3f} ± {math.sqrt(p * (1 - p) / len(hits)):.3f} (n = {len(hits)}, chance {chance:.2f})",
              flush=True)
        if task == "agreement":
            forms: dict[str, list[int]] = {}
            for r, hit in zip(records, hits):
                forms.setdefault(r["id"].rsplit("-", 1)[1], []).append(hit)
            print("  " + ", ".join(f"{f} {np.mean(v):.2f}" for f, v in forms.items()), flush=True)


if __name__ == "__main__":
    main()
