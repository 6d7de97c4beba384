"""How well the teacher learns the seeded world's facts at a given world size and share of pretraining (issue 20's
measurement that chose prepare.world_people, world_demonstrated and world_fraction; not a pipeline stage).

Builds the pretraining text as `prepare` does (the prepared pretraining records plus world documents at the share
asked for, shuffled in), trains a teacher with params.yaml's `teacher` recipe on it, and scores the world questions
in text, zero-shot: every attribute of the stated-only people (the evaluated ones) and of the demonstrated people.
Run from the project root after `make repro` (about 10 minutes on 2 idle cores):

    .venv/bin/python explorations/world_teacher.py --people 120 --demonstrated 20 --fraction 0.2 --out /tmp/world

What it measured is in explorations/README.md.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from salad.config import load_params
from salad.data.world import ATTRIBUTES, QUESTION_FORMAT, make_people, world_documents, world_items
from salad.evaluation.benchmarks import score_text
from salad.model.teacher import load_teacher, load_tokenizer
from salad.stages.teacher import train_teacher
from salad.storage.atomic import read_jsonl, write_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=120)
    ap.add_argument("--demonstrated", type=int, default=20)
    ap.add_argument("--fraction", type=float, default=0.2, help="world share of the pretraining characters")
    ap.add_argument("--out", type=Path, required=True, help="work folder (the teacher is kept there and reused)")
    args = ap.parse_args()
    params = load_params("params.yaml")
    rng = np.random.default_rng(params.seed)
    people = make_people(args.people, args.demonstrated, rng)
    prepared = args.out / "prepared"
    if not (args.out / "teacher").exists():
        prepared.mkdir(parents=True, exist_ok=True)
        # the prepared pretraining text without any world text already woven in
        pretrain = [r for r in read_jsonl(Path("data/prepared/pretrain.jsonl")) if not r["id"].startswith("world#")]
        chars = sum(len(r["text"]) for r in pretrain)
        docs = pretrain + world_documents(people, int(args.fraction / (1 - args.fraction) * chars), rng)
        write_jsonl(prepared / "pretrain.jsonl", [docs[i] for i in np.random.default_rng(1).permutation(len(docs))])
        shutil.copy("data/prepared/test.jsonl", prepared / "test.jsonl")
        train_teacher(params, prepared, args.out / "teacher", args.out / "live", args.out / "metrics.json")
    tokenizer, teacher = load_tokenizer(args.out / "teacher"), load_teacher(args.out / "teacher").eval()
    demonstrated = [p for p in people if p.demonstrated]
    flipped = [type(p)(p.name, p.facts, False) for p in demonstrated]  # score them as if evaluated
    for name, group in (("stated only", people), ("demonstrated", flipped)):
        items = world_items(group, np.random.default_rng(2))
        with torch.no_grad():
            hits = [int(np.argmax(score_text(teacher, tokenizer, QUESTION_FORMAT.format(question=r["question"]),
                                             r["options"])) == r["label"]) for r in items]
        p = float(np.mean(hits))
        print(f"{name}: {p:.3f} ± {math.sqrt(p * (1 - p) / len(hits)):.3f} (n = {len(hits)}, chance 0.25, "
              f"{len(ATTRIBUTES)} attributes)")


if __name__ == "__main__":
    main()
