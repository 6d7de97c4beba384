"""`salad <stage>`: one subcommand per pipeline stage; `dvc.yaml` calls these, and so can you.

Each subcommand is a thin wrapper: it reads the params file, calls one plain function of the library with explicit
input and output paths, and prints the stage's summary as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

from salad.scale.estimate import Rates
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
           ("speech", "data/speech"), ("out", "data/eval"), ("metrics", "metrics/evaluate.json"))
    cell = [("teacher", "data/models/teacher"), ("root", "."), ("prepared", "data/prepared"),
            ("speech", "data/speech"), ("features", "data/features")]
    for name, help, paths in (
        ("grid-train", "train one cell (alpha, data) of the analysis grid, every budget",
         [("out", "data/grid/cell/model"), ("live", "dvclive/grid/cell"), ("metrics", "metrics/grid/cell/train.json"),
          ("checkpoints", "data/checkpoints/grid/cell")]),
        ("grid-measure", "M and F of every model of a grid cell",
         [("model", "data/grid/cell/model"), ("metrics", "metrics/grid/cell/measure.json")]),
        ("grid-evaluate", "benchmarks of every model of a grid cell",
         [("model", "data/grid/cell/model"), ("out", "data/grid/cell/eval"),
          ("metrics", "metrics/grid/cell/evaluate.json")]),
    ):
        p = _stage(name, help, sub, *cell, *paths)
        p.add_argument("--alpha", type=float, required=True, help="the cell's alpha (one of grid.alphas)")
        p.add_argument("--data", required=True, choices=["speech", "broad"],
                       help="the cell's data side: its speech store (D_speech, narrow; D_broad, broad synthetic)")
    _stage("active-embed", "sentence embeddings of the selection pool, the probes and D_speech", sub,
           ("prepared", "data/prepared"), ("out", "data/active/embeddings"))
    _stage("active-cluster", "balanced k-means of the pool, probes and terms per cluster", sub,
           ("embeddings", "data/active/embeddings"), ("out", "data/active/clusters"),
           ("metrics", "metrics/active/clusters.json"))
    _stage("active-probes", "the probe documents spoken in the fixed voice and encoded", sub,
           ("clusters", "data/active/clusters"), ("out", "data/active/probes"))
    _stage("active-misalignment", "M(c): L_DIST of the Stage I model on each cluster's probes", sub,
           ("teacher", "data/models/teacher"), ("model", "data/models/student"), ("clusters", "data/active/clusters"),
           ("probes", "data/active/probes"), ("metrics", "metrics/active/misalignment.json"))
    select = _stage("active-select", "D_active for one gamma and every budget: drawn, spoken and encoded", sub,
                    ("embeddings", "data/active/embeddings"), ("clusters", "data/active/clusters"),
                    ("misalignment", "metrics/active/misalignment.json"), ("probes", "data/active/probes"),
                    ("speech", "data/speech"), ("out", "data/active/select/gamma"),
                    ("metrics", "metrics/active/select/gamma.json"))
    select.add_argument("--gamma", type=float, required=True, help="the exponent of M(c) (one of active.gammas)")
    stage2_cell = [("teacher", "data/models/teacher"), ("model", "data/stage2/cell/model")]
    for name, help, paths in (
        ("stage2-train", "Stage II from Stage I's pre-decay checkpoint on D_speech, D_active and text",
         [("teacher", "data/models/teacher"), ("stage1", "data/models/student"), ("prepared", "data/prepared"), ("speech", "data/speech"),
          ("features", "data/features"), ("select", "data/active/select/gamma"), ("out", "data/stage2/cell/model"),
          ("live", "dvclive/stage2/cell"), ("metrics", "metrics/stage2/cell/train.json"),
          ("checkpoints", "data/checkpoints/stage2/cell")]),
        ("stage2-measure", "M and F of a Stage II model",
         [*stage2_cell, ("speech", "data/speech"), ("features", "data/features"),
          ("metrics", "metrics/stage2/cell/measure.json")]),
        ("stage2-evaluate", "benchmarks of a Stage II model",
         [*stage2_cell, ("root", "."), ("features", "data/features"), ("out", "data/stage2/cell/eval.jsonl"),
          ("metrics", "metrics/stage2/cell/evaluate.json")]),
    ):
        p = _stage(name, help, sub, *paths)
        p.add_argument("--gamma", type=float, required=True, help="the cell's gamma (one of active.gammas)")
        p.add_argument("--budget", type=float, required=True,
                       help="the cell's budget, a fraction of D_speech's audio (one of active.budgets)")
    _stage("stage2-mmsu", "the active Stage II model on every MMSU item of `evaluate`, in speech (Figure 7)", sub,
           ("teacher", "data/models/teacher"), ("model", "data/stage2/cell/model"), ("root", "."),
           ("features", "data/features"), ("out", "data/stage2_mmsu.jsonl"), ("metrics", "metrics/stage2_mmsu.json"))
    report = _stage("report", "execute a report notebook with papermill into reports/<notebook>/", sub,
                    ("notebook", "notebooks/stage1.py"), ("out", "reports/stage1"))
    report.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    _stage("report-index", "reports/README.md from the artifact registry, dvc.yaml and the rendered reports", sub,
           ("reports", "reports"), ("out", "reports/README.md"))
    base = _stage("baseline", "score another speech LLM (Tables 3 and 5) on the evaluate stage's items", sub,
                  ("root", "."), ("speech", "data/speech"), ("out", "data/baselines"))
    base.add_argument("--name", required=True, help="a key of salad.baselines.speech_llms.BASELINES, e.g. qwen2-audio-7b-instruct")
    base.add_argument("--model", type=Path, required=True, help="local folder of the model (its hub checkpoint)")
    base.add_argument("--asr-model", type=Path, default=None,
                      help="cascade only: local Whisper folder (default: evaluate.asr_model; null: oracle transcript)")
    base.add_argument("--reference", type=Path, default=None,
                      help="text-mode records (.jsonl) of the baseline's text backbone, for the gaps")
    base.add_argument("--modes", nargs="+", default=["text", "speech"], choices=["text", "speech"])
    base.add_argument("--limit", type=int, default=None, help="only the first N items of every task and format")
    base.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    base.add_argument("--metrics", type=Path, default=None, help="(default: metrics/baselines/<name>.json)")
    # tools around the pipeline (not DVC stages)
    check = sub.add_parser("check-profile", help="validate a profile end to end on tiny stand-ins of its models, "
                                                 "and list the local files it needs")
    check.add_argument("profile", type=Path, help="params file, e.g. params/paper-3b.yaml")
    check.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    check.add_argument("--raw", type=Path, default=Path("data/raw"), help="(default: data/raw)")
    check.add_argument("--out", type=Path, default=None, help="also write the report as JSON to this file")
    est = _stage("estimate", "dry run: audio hours, disk and GPU-hours of a profile (--params), printed", sub)
    for f in dataclasses.fields(Rates):  # each assumption of the estimate (salad.scale.estimate.Rates) is a flag
        est.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                         help=f"(default: {f.default:g})")
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")
    fetch = _stage("fetch", "stream a corpus of the profile's `corpora` section into local parts (resumable; "
                            "torchrun ranks or RANK/WORLD_SIZE split it)", sub)
    fetch.add_argument("--corpus", required=True, choices=["web", "text_mix", "natural_speech"])
    return parser


CELL_STAGES = {  # stage: (module, function, the arguments after params, in order)
    "grid-train": ("salad.stages.grid", "train_cell", "alpha data teacher prepared speech features out live metrics checkpoints"),
    "grid-measure": ("salad.stages.grid", "measure_cell", "alpha data teacher model speech features metrics"),
    "grid-evaluate": ("salad.stages.grid", "evaluate_cell", "alpha data teacher model root features out metrics"),
    "active-embed": ("salad.stages.active", "embed_stage", "prepared out"),
    "active-cluster": ("salad.stages.active", "cluster_stage", "embeddings out metrics"),
    "active-probes": ("salad.stages.active", "probes_stage", "clusters out"),
    "active-misalignment": ("salad.stages.active", "misalignment_stage", "teacher model clusters probes metrics"),
    "active-select": ("salad.stages.active", "select_stage",
                      "gamma embeddings clusters misalignment probes speech out metrics"),
    "stage2-train": ("salad.stages.stage2", "train_cell",
                     "gamma budget teacher stage1 prepared speech features select out live metrics checkpoints"),
    "stage2-measure": ("salad.stages.stage2", "measure_cell", "gamma budget teacher model speech features metrics"),
    "stage2-evaluate": ("salad.stages.stage2", "evaluate_cell", "gamma budget teacher model root features out metrics"),
    "stage2-mmsu": ("salad.analysis.category_gains", "mmsu_stage", "teacher model root features out metrics"),
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stage != "fetch":  # fetching a corpus is the one command that may reach the hub
        go_offline()
    if args.stage == "check-profile":
        return _check_profile(args)
    from salad.config import load_params

    params = load_params(args.params)
    if args.stage == "estimate":
        from salad.scale.estimate import estimate, format_estimate
        rates = Rates(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Rates)})
        result = estimate(params, rates)
        if not args.json:
            print(format_estimate(result))
            return 0
    elif args.stage == "fetch":
        from salad.scale.corpora import fetch
        spec = getattr(params.corpora, args.corpus)
        if spec is None:
            raise SystemExit(f"{args.params}: corpora.{args.corpus} is null: name the corpus to fetch there")
        c = params.corpora
        result = fetch(args.corpus, spec, Path(c.out) / args.corpus, docs_per_part=c.docs_per_part,
                       max_documents=c.max_documents)
    elif args.stage == "baseline":
        from salad.baselines.speech_llms import evaluate_baseline
        result = evaluate_baseline(params, args.name, args.model, args.root, args.speech, args.out,
                                   args.metrics or Path("metrics/baselines") / f"{args.name}.json",
                                   asr_model=args.asr_model, reference=args.reference, modes=tuple(args.modes),
                                   limit=args.limit, device=args.device)
    elif args.stage == "prepare":
        from salad.data.prepare import prepare
        result = prepare(params, args.raw, args.out)
    elif args.stage == "teacher":
        from salad.stages.teacher import train_teacher
        result = train_teacher(params, args.prepared, args.out, args.live, args.metrics)
    elif args.stage == "synthesize":
        from salad.stages.synthesize import synthesize
        result = synthesize(params, args.prepared, args.root, args.out)
    elif args.stage == "natural":
        from salad.speech.natural import ingest
        result = ingest(params, args.root, args.out)
    elif args.stage == "encode":
        from salad.stages.encode import encode
        result = encode(params.encode, args.speech, args.out, natural=args.natural)
    elif args.stage == "train":
        from salad.stages.train import train
        result = train(params, args.teacher, args.prepared, args.speech, args.features, args.out, args.live,
                       args.metrics, args.checkpoints)
    elif args.stage == "measure":
        from salad.stages.measure import measure
        result = measure(params, args.teacher, args.model, args.speech, args.features, args.metrics)
    elif args.stage == "evaluate":
        from salad.stages.evaluate import evaluate
        result = evaluate(params, args.teacher, args.model, args.root, args.features, args.out, args.metrics,
                          speech=args.speech)
    elif args.stage in CELL_STAGES:
        module, function, names = CELL_STAGES[args.stage]
        run = getattr(importlib.import_module(module), function)
        result = run(params, *(getattr(args, name) for name in names.split()))
    elif args.stage == "report":
        from salad.analysis.report import run_notebook
        result = run_notebook(args.notebook, args.out, params_path=args.params, timeout=args.timeout)
    elif args.stage == "report-index":
        from salad.analysis.report import write_index
        write_index(args.reports, args.out)
        result = {"index": str(args.out)}
    else:  # pragma: no cover - argparse rejects unknown stages
        raise AssertionError(args.stage)
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0


def _check_profile(args) -> int:
    import tempfile

    from salad.scale.check_profile import check_profile, format_report

    with tempfile.TemporaryDirectory(prefix="salad-check-") as tmp:
        report = check_profile(args.profile, args.work or tmp, raw=args.raw)
    if args.out:
        from salad.storage.atomic import write_json
        write_json(args.out, json.loads(json.dumps(report, default=str)))
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
