"""`salad <stage>`: one subcommand per pipeline stage; `dvc.yaml` calls these, and so can you.

Each subcommand is a thin wrapper: it reads the params file, calls one plain function of the library with explicit
input and output paths, and prints the stage's summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from salad.offline import go_offline


def _stage(name: str, help: str, sub, *paths: tuple[str, str]):
    p = sub.add_parser(name, help=help)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    for flag, default in paths:
        p.add_argument(f"--{flag}", type=Path, default=Path(default), help=f"(default: {default})")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salad", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    _stage("prepare", "deterministic splits of the shipped raw data", sub, ("raw", "data/raw"), ("out", "data/prepared"))
    _stage("teacher", "train the tokenizer and the teacher LM", sub, ("prepared", "data/prepared"),
           ("out", "data/models/teacher"), ("live", "dvclive/teacher"), ("metrics", "metrics/teacher.json"))
    _stage("synthesize", "espeak-ng speech with word timestamps", sub, ("prepared", "data/prepared"),
           ("root", "."), ("out", "data/speech"))
    _stage("natural", "natural speech from a manifest, word-timed and resampled", sub, ("root", "."),
           ("out", "data/natural"))
    _stage("encode", "frozen speech-encoder features at 12.5 Hz", sub, ("speech", "data/speech"),
           ("natural", "data/natural"), ("out", "data/features"))
    _stage("train", "Stage I training of the speech-adapted LM", sub, ("teacher", "data/models/teacher"),
           ("prepared", "data/prepared"), ("speech", "data/speech"), ("features", "data/features"),
           ("out", "data/models/student"), ("live", "dvclive/train"), ("metrics", "metrics/train.json"),
           ("checkpoints", "data/checkpoints/student"))
    _stage("measure", "misalignment M and forgetting F", sub, ("teacher", "data/models/teacher"),
           ("model", "data/models/student"), ("speech", "data/speech"), ("features", "data/features"),
           ("metrics", "metrics/measure.json"))
    _stage("evaluate", "benchmarks in text and speech mode", sub, ("teacher", "data/models/teacher"),
           ("model", "data/models/student"), ("root", "."), ("features", "data/features"),
           ("out", "data/eval"), ("metrics", "metrics/evaluate.json"))
    report = _stage("report", "execute a report notebook with papermill", sub,
                    ("notebook", "notebooks/report.py"), ("out", "reports"))
    report.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    return parser


def main(argv: list[str] | None = None) -> int:
    go_offline()
    args = build_parser().parse_args(argv)
    from salad.config import load_params

    params = load_params(args.params)
    if args.stage == "prepare":
        from salad.prepare import prepare
        result = prepare(params, args.raw, args.out)
    elif args.stage == "teacher":
        from salad.teacher import train_teacher
        result = train_teacher(params, args.prepared, args.out, args.live, args.metrics)
    elif args.stage == "synthesize":
        from salad.synthesize import synthesize
        result = synthesize(params, args.prepared, args.root, args.out)
    elif args.stage == "natural":
        from salad.natural import ingest
        result = ingest(params, args.root, args.out)
    elif args.stage == "encode":
        from salad.encode import encode
        result = encode(params.encode, args.speech, args.out, natural=args.natural)
    elif args.stage == "train":
        from salad.train import train
        result = train(params, args.teacher, args.prepared, args.speech, args.features, args.out, args.live,
                       args.metrics, args.checkpoints)
    elif args.stage == "measure":
        from salad.measure import measure
        result = measure(params, args.teacher, args.model, args.speech, args.features, args.metrics)
    elif args.stage == "evaluate":
        from salad.evaluate import evaluate
        result = evaluate(params, args.teacher, args.model, args.root, args.features, args.out, args.metrics)
    elif args.stage == "report":
        from salad.report import run_notebook
        result = run_notebook(args.notebook, args.out, params_path=args.params, timeout=args.timeout)
    else:  # pragma: no cover - argparse rejects unknown stages
        raise AssertionError(args.stage)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
