"""The benchmark harness (docs/design.md §7): which items, shots and spoken contexts are evaluated, how each run
scores them, and how the scores are summarized (best format per task) and compared (the gaps). The `evaluate`
stage (salad.stages.evaluate) runs it on the teacher in text mode, the student in text and speech mode (in the
pipeline's voice and in a second voice) and the cascaded topline (ASR transcript -> teacher); the grid and Stage II
stages run it on their models.

Scoring. Text mode follows lm-evaluation-harness conventions (see salad.evaluation.scoring): each choice is scored
by its log-likelihood as a continuation of the context, and every item saves acc (argmax of the log-likelihoods),
acc_norm (argmax of the log-likelihoods over the choices' characters) and acc_bytes (over their UTF-8 bytes). In
speech mode the whole context (demonstrations and question) is audio, synthesized once by the `synthesize` stage
and encoded by `encode`; the scored continuation is text, " " + choice, its first token predicted from the last
speech frame. Every sequence opens with the document-start token, as in training.

Shots (paper Appendix A.4: "as many demonstrations as can fit in the audio context window [...] up to a maximum of
five"; SC 5, MMSU 4, OBQA 5, HS 3, ARC 1, PIQA 5). A task's cap is min(its paper shots, `evaluate.shots`). Speech is
the binding mode (12.5 frames a second of audio against about 3 text tokens), so the cap is reduced to the largest
number of shots at which at least `evaluate.shots_fit_fraction` of the task's items (every format) are estimated to
fit the speech window, min(teacher.context, train.max_len): the LM's positions and the longest sequence the student
was trained on (the paper's 2048). The estimate is made before synthesis, from text alone:

    positions = 1 (document start) + ceil(characters of the spoken context x evaluate.speech_frames_per_char)
                + ceil(UTF-8 bytes of the longest " " + choice / TEXT_BYTES_PER_TOKEN) - 1

Characters predict speech length better than words (letters, numbers and "A." option labels are slow per word);
the ratio is a param because it belongs to the voice, and every run reports the ratio measured on its own
synthesized contexts beside the assumed one (default world, espeak-ng en-us: mean 0.79 over 1000 contexts; MMSU's
spoken numbers and formulas run to 1.6, and its long items miss the 512-position window even without shots). The
demonstrations are one seeded draw per task (salad.evaluation.tasks), so all items and all formats of a task carry
the same demonstration records, and fewer shots only drop demonstrations from the end. An item whose real context
still does not fit is a counted skip (never scored on a truncated context).

Spoken contexts are keyed by a hash of their text (`context_id`), so a text shared by several items or formats
(e.g. mc_letter and mc_option at 0 shots: the same question and option list) is synthesized, encoded and transcribed
once. With demonstrations the two formats differ (their demonstrations end in a letter or in the option text).

Runs and their names in the metrics: teacher (text), student (text and speech), cascade (speech in: the transcript of
the spoken context, salad.evaluation.cascade, scored by the teacher as text), and student_voice2 (speech in the
second voice, `evaluate.second_voice`, paper Table 8). Headline metric (`HEADLINE`, "accuracy"): each task's stated
scoring convention, `Task.metric`: acc_norm for the paper's benchmarks (the paper scores "the normalized log
probability of each answer", Appendix A.4), acc for the miniature family's word and short-phrase choices; acc,
acc_norm and acc_bytes are saved beside it for every item.

Best format per task. For every model, mode and task the best prompt format is reported (the paper reports each
model under its best format), all formats are kept, and the gaps are taken between best formats: Table 3's gap =
teacher text accuracy - student speech accuracy, Table 5's text gap = teacher text accuracy - student text accuracy,
per task and on the average over tasks. The headline average is over the miniature family's tasks when any is
evaluated (`headline_tasks`: in the miniature world the paper benchmarks sit at chance), else over all tasks; the
average of each group ("family", "benchmarks") is kept beside it. `best_format` is the one definition of a task's
best format, and
`best_format_accuracy` and `average_accuracy` the one reading of a model's accuracy that every table and report
uses. Each accuracy is over the items its run scored: where speech skips items that text mode scores (MMSU in the
default world), the two are over different items; the per-item records allow a matched comparison.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from salad.config import Params
from salad.data.documents import FeatureReader
from salad.data.tokens import doc_start_id
from salad.evaluation.cascade import Cascade
from salad.evaluation.scoring import ACCURACIES, ContextTooLong, accuracy_metrics, score_continuations, text_requests
from salad.evaluation.tasks import Item, demo_text, fewshot_items, get_task, load_items
from salad.model.speech_lm import SpeechAdaptedLM
from salad.storage.store import ShardedStore

HEADLINE = "accuracy"
"""The headline accuracy of every summary: each item's task's own scoring convention (`Task.metric`: acc_norm for
the paper's benchmarks, acc for the miniature family), kept beside acc, acc_norm and acc_bytes."""
VOICE2 = "eval_voice2"
"""The speech and feature stores of the eval contexts in the second voice (beside `eval`)."""
TEXT_BYTES_PER_TOKEN = 2.0
"""Bytes per token assumed when estimating a choice's token count before the tokenizer exists (synthesis does not
depend on the teacher). Byte-level BPE tokenizers give 3-4.5 bytes a token on English choices (measured: 3.1-4.3 on
average per task with the default world's 8k vocabulary); 2 leaves a margin for short and numeric choices."""
REFERENCE = ("teacher", "text")
"""The reference of every gap: the text LM on text."""
GAPS = {"speech": ("student", "speech"), "text": ("student", "text"), "cascade": ("cascade", "speech"),
        "speech_voice2": ("student_voice2", "speech")}
"""Gap name -> (model, mode) compared with `REFERENCE`: 'speech' is the paper's Table 3 gap, 'text' Table 5's,
'cascade' the topline's gap (Table 3) and 'speech_voice2' the second voice's (Table 8)."""


def speech_window(params: Params) -> int:
    """Positions a speech-mode request may use: the LM's window and the longest sequence the student trained on."""
    return min(params.teacher.context, params.train.max_len)


def spoken_text(item: Item, prefix: str) -> str:
    """What is synthesized for an item: its demonstrations and context, stripped (a TTS reads no edge whitespace)."""
    return (prefix + item.context).strip()


def context_id(item: Item, prefix: str) -> str:
    """The id of an item's spoken context in the speech and feature stores: a hash of its text, so that items and
    formats with the same context text share one recording."""
    return "ctx-" + hashlib.sha256(spoken_text(item, prefix).encode("utf-8")).hexdigest()[:24]


def estimated_speech_positions(text: str, choices: list[str], frames_per_char: float) -> int:
    """Positions a speech-mode request is estimated to need before `text` is synthesized (see the module docstring)."""
    frames = math.ceil(len(text) * frames_per_char)
    longest = max(math.ceil(len((" " + c).encode("utf-8")) / TEXT_BYTES_PER_TOKEN) for c in choices)
    return 1 + frames + longest - 1


def plan_task(params: Params, root: Path, name: str) -> tuple[int, dict[str, tuple[list[Item], str]]]:
    """(shots, {format: (items, few-shot prefix)}) of one task: its evaluated items in every format and the shots
    chosen for it (see the module docstring), with the same demonstration records for every item and format.

    Evaluated items are the first `evaluate.items` (a family task: `evaluate.family_items`) of the task's seeded
    shuffle. With a separate few-shot file the
    demonstrations are drawn from it; when the pool is the evaluated file itself (MMSU, HellaSwag, PIQA) the
    demonstrations are drawn first, from the whole file, and their records are left out of the evaluated items, so
    that evaluating every item (the paper profiles) still leaves demonstrations to show.
    """
    cfg = params.evaluate
    task = get_task(name)
    n = cfg.family_items if task.family else cfg.items
    cap = min(task.paper_shots, cfg.shots)
    if task.fewshot_file is None:
        drawn = {fmt: fewshot_items(name, fmt, root, cap, params.seed, exclude_ids=set()) for fmt in task.formats}
        held = {i.id for fmt_items in drawn.values() for i in fmt_items}  # the same records in every format
        items = {fmt: [i for i in load_items(name, fmt, root, n=None, seed=params.seed) if i.id not in held]
                 [:n] for fmt in task.formats}
    else:
        items = {fmt: load_items(name, fmt, root, n=n, seed=params.seed) for fmt in task.formats}
        exclude = {i.id for fmt_items in items.values() for i in fmt_items}
        drawn = {fmt: fewshot_items(name, fmt, root, cap, params.seed, exclude_ids=exclude) for fmt in task.formats}
    demos = {fmt: [demo_text(i) for i in drawn[fmt]] for fmt in task.formats}
    window = speech_window(params)
    total = sum(len(v) for v in items.values())
    shots = 0
    for k in range(cap, -1, -1):
        fits = sum(estimated_speech_positions(spoken_text(item, "".join(demos[fmt][:k])), item.choices,
                                              cfg.speech_frames_per_char) <= window
                   for fmt, fmt_items in items.items() for item in fmt_items)
        if fits >= cfg.shots_fit_fraction * total:
            shots = k
            break
    return shots, {fmt: (items[fmt], "".join(demos[fmt][:shots])) for fmt in task.formats}


def eval_plan(params: Params, root: Path) -> tuple[list[tuple[str, Item, str]], dict[str, int]]:
    """(every evaluated (format, item, few-shot prefix), {task: shots used})."""
    out, shots = [], {}
    for name in params.evaluate.tasks:
        shots[name], formats = plan_task(params, root, name)
        for fmt, (items, prefix) in formats.items():
            out += [(fmt, item, prefix) for item in items]
    return out, shots


def eval_items(params: Params, root: Path) -> list[tuple[str, Item, str]]:
    """(format, item, few-shot prefix) for every evaluated item; the same demonstrations for every item of a task
    (and the same records in every format), drawn with the seed from the task's few-shot pool and never containing
    an evaluated item."""
    return eval_plan(params, root)[0]


def task_shots(params: Params, root: Path) -> dict[str, int]:
    """The shots used per task."""
    return eval_plan(params, root)[1]


def eval_contexts(params: Params, root: Path) -> list[dict]:
    """The spoken contexts to synthesize, {id, text}: one per distinct context text, in the order items first use
    them."""
    return contexts_of(eval_items(params, root))


def contexts_of(items: list[tuple[str, Item, str]]) -> list[dict]:
    """The distinct spoken contexts {id, text} of (format, item, prefix) triples, in order of first use."""
    contexts: dict[str, str] = {}
    for fmt, item, prefix in items:
        contexts.setdefault(context_id(item, prefix), spoken_text(item, prefix))
    return [{"id": cid, "text": text} for cid, text in contexts.items()]


def score_text(lm, tokenizer, context: str, choices: list[str]) -> list[float]:
    ctx_ids, conts = text_requests(tokenizer, context, choices, prefix_ids=[doc_start_id(tokenizer)])
    embeds = lm.get_input_embeddings()(torch.tensor(ctx_ids))
    return score_continuations(lm, embeds, conts)


def score_speech(model: SpeechAdaptedLM, tokenizer, features: np.ndarray, choices: list[str]) -> list[float]:
    frames = torch.from_numpy(np.asarray(features, dtype=np.float32))[None]
    speech = model.adapter(frames, torch.ones(frames.shape[:2], dtype=torch.long))[0]
    start = model.lm.get_input_embeddings()(torch.tensor([doc_start_id(tokenizer)]))
    conts = [tokenizer(" " + c, add_special_tokens=False)["input_ids"] for c in choices]
    return score_continuations(model.lm, torch.cat([start, speech]), conts)


def first_items(items: list[tuple[str, Item, str]], n: int, n_family: int | None = None
                ) -> list[tuple[str, Item, str]]:
    """The first `n` items of every paper benchmark and format and the first `n_family` (None: `n`) of every family
    task (a smaller evaluation of the same contexts, which keeps their demonstrations and so their synthesized
    speech)."""
    n_family = n if n_family is None else n_family
    seen: dict[tuple[str, str], int] = defaultdict(int)
    out = []
    for fmt, item, prefix in items:
        seen[(item.task, fmt)] += 1
        if seen[(item.task, fmt)] <= (n_family if get_task(item.task).family else n):
            out.append((fmt, item, prefix))
    return out


def score_items(items: list[tuple[str, Item, str]], tokenizer, runs: list[tuple[str, str, object]],
                feat_by_id: FeatureReader | None = None, desc: str = "evaluate") -> dict[str, list[dict]]:
    """Per-item records of every run (name, mode, model): a text-mode run scores with a causal LM, a speech-mode run
    with a SpeechAdaptedLM on the item's speech features from `feat_by_id`, or, when the model is a `Cascade`, with
    its LM on the transcript of the item's spoken context. An item whose context does not fit is a counted skip."""
    records: dict[str, list[dict]] = defaultdict(list)
    for fmt, item, prefix in tqdm(items, desc=desc, unit="item", mininterval=5):
        # text scores of this item by (LM, context): the oracle cascade's transcript is the teacher's own text
        # context, so its scores are reused rather than computed twice (scoring is deterministic)
        text_scores: dict[tuple[int, str], list[float]] = {}

        def scored_text(lm, context: str) -> list[float]:
            key = (id(lm), context)
            if key not in text_scores:
                text_scores[key] = score_text(lm, tokenizer, context, item.choices)
            return text_scores[key]

        for name, mode, model in runs:
            try:
                if mode == "text":
                    scores = scored_text(model, prefix + item.context)
                elif isinstance(model, Cascade):
                    transcript = model.transcript(context_id(item, prefix), spoken_text(item, prefix))
                    scores = scored_text(model.lm, transcript)
                else:
                    cid = context_id(item, prefix)
                    if feat_by_id is None or cid not in feat_by_id:
                        where = f" in {feat_by_id.dir}" if feat_by_id is not None else ""
                        raise ValueError(f"no speech features{where} for {item.id!r} ({fmt}, context {cid!r}); rerun "
                                         f"`salad synthesize` and `salad encode`")
                    scores = score_speech(model, tokenizer, feat_by_id[cid], item.choices)
            except ContextTooLong as e:
                records[name].append(skipped_record(item, fmt, mode, e))
                continue
            records[name].append(scored_record(item, fmt, mode, scores))
    return records


def scored_record(item: Item, fmt: str, mode: str, scores: list[float]) -> dict:
    """One scored item as every evaluation writes it: its place (task, format, mode, id), label, the choices'
    summed log-likelihoods, and acc, acc_norm, acc_bytes and `HEADLINE` (the task's stated metric)."""
    return {"task": item.task, "format": fmt, "mode": mode, "id": item.id, "label": item.label,
            "n_choices": len(item.choices), "scores": [round(s, 5) for s in scores],
            **accuracy_metrics(scores, item.choices, item.label, get_task(item.task).metric)}


def skipped_record(item: Item, fmt: str, mode: str, reason: Exception) -> dict:
    """An item whose context does not fit the model's window: kept, with why, so summaries count it as skipped."""
    return {"task": item.task, "format": fmt, "mode": mode, "id": item.id, "skipped": str(reason)}


def summarize(records: list[dict]) -> dict:
    """{task: {format: {mode: {n, skipped, acc, acc_norm, acc_bytes, accuracy, chance}}}} of one model's per-item
    records (accuracy: the task's `metric`, `HEADLINE`)."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["task"], r["format"], r["mode"])].append(r)
    results: dict = {}
    for (task, fmt, mode), rs in sorted(groups.items()):
        scored = [r for r in rs if "skipped" not in r]
        summary = {"n": len(scored), "skipped": len(rs) - len(scored)}
        for key in ACCURACIES:
            summary[key] = round(float(np.mean([r[key] for r in scored])), 4) if scored else float("nan")
        # the headline from the registry, not from the records: per-item files written before tasks stated their
        # metric (a baseline's --reference records, say) carry no "accuracy" field
        summary[HEADLINE] = summary[get_task(task).metric]
        summary["chance"] = round(float(np.mean([1 / r["n_choices"] for r in scored])), 4) if scored else float("nan")
        results.setdefault(task, {}).setdefault(fmt, {})[mode] = summary
    return results


def best_format(formats: dict[str, dict], mode: str, metric: str = HEADLINE) -> str | None:
    """The prompt format with the highest `metric` in `mode` among `formats` ({format: {mode: summary}}, one task
    of `summarize`): the first of equal values in `formats`' order; formats with nothing scored in `mode` (NaN)
    are passed over; None when no format was scored. The one definition of "best format" (the paper reports each
    model under its best prompt format per task)."""
    scored = [f for f in formats if mode in formats[f] and math.isfinite(formats[f][mode][metric])]
    return max(scored, key=lambda f: formats[f][mode][metric]) if scored else None  # max keeps the first of equals


def best_format_accuracy(results: dict, mode: str, metric: str = HEADLINE) -> dict[str, float]:
    """{task: the best format's `metric`} in `mode` for every task of `results` (one model's `summarize`) that was
    run in `mode`, in `results`' order; NaN for a task none of whose formats was scored."""
    best = {}
    for task, formats in results.items():
        if any(mode in f for f in formats.values()):
            fmt = best_format(formats, mode, metric)
            best[task] = formats[fmt][mode][metric] if fmt is not None else float("nan")
    return best


def average_accuracy(per_task: dict[str, float]) -> float:
    """The mean over tasks of per-task accuracies (the paper's average; NaN if any task is NaN)."""
    return float(np.mean(list(per_task.values())))


def task_groups(tasks) -> dict[str, list[str]]:
    """{"family": the miniature family's tasks among `tasks`, "benchmarks": the paper's} (in `tasks`' order)."""
    tasks = list(tasks)
    return {"family": [t for t in tasks if get_task(t).family], "benchmarks": [t for t in tasks if not get_task(t).family]}


def headline_tasks(tasks) -> list[str]:
    """The tasks whose average is the headline accuracy: the family's when any family task is evaluated (the
    miniature world, where the paper benchmarks sit at chance), else all of them (paper scale)."""
    return task_groups(tasks)["family"] or list(tasks)


def category_tasks(params: Params) -> list[str]:
    """Figure 7's tasks: `active.category_tasks`, or the headline tasks of `evaluate.tasks` when it is null."""
    return list(params.active.category_tasks or headline_tasks(params.evaluate.tasks))


def group_averages(per_task: dict[str, float]) -> dict[str, float]:
    """The headline "average" of `per_task` and the average of each non-empty task group ("family", "benchmarks")."""
    out = {"average": average_accuracy({t: per_task[t] for t in headline_tasks(per_task)})}
    for group, tasks in task_groups(per_task).items():
        if tasks:
            out[group] = average_accuracy({t: per_task[t] for t in tasks})
    return out


def best_formats(results: dict, metric: str = HEADLINE) -> dict:
    """{model: {mode: {"tasks": {task: {"format", metric, "n"}}, "average"}}}: for every model, mode and task the
    `best_format` (ties: the task's first format in Table 6 order; a task with no format scored gets format None
    and NaN), the headline average over tasks of those best accuracies (`headline_tasks`; NaN if any task is NaN)
    and the average of each task group under "averages". `results` is
    {model: summarize(records)}."""
    best: dict = {}
    for model, tasks in results.items():
        for task, formats in tasks.items():
            in_table_order = {f: formats[f] for f in get_task(task).formats if f in formats}
            for mode in sorted({m for f in formats.values() for m in f}):
                fmt = best_format(in_table_order, mode, metric)
                if fmt is not None:
                    summary = in_table_order[fmt][mode]
                    entry = {"format": fmt, metric: summary[metric], "n": summary["n"]}
                else:
                    entry = {"format": None, metric: float("nan"), "n": 0}
                best.setdefault(model, {}).setdefault(mode, {"tasks": {}})["tasks"][task] = entry
    for modes in best.values():
        for summary in modes.values():
            averages = group_averages({t: e[metric] for t, e in summary["tasks"].items()})
            summary["average"] = round(averages.pop("average"), 4)
            summary["averages"] = {group: round(value, 4) for group, value in averages.items()}
    return best


def benchmark_gaps(best: dict, metric: str = HEADLINE) -> dict:
    """{gap name: {"reference", "system", "tasks": {task: gap}, "average"}} for every gap of `GAPS` whose system was
    evaluated: reference accuracy (teacher, text) minus the system's, both in their best format, per task the two
    share and on the averages over those tasks (paper Tables 3 and 5: lower is better)."""
    ref_model, ref_mode = REFERENCE
    if ref_model not in best or ref_mode not in best[ref_model]:
        raise ValueError(f"no {ref_model} {ref_mode}-mode results: the gaps need the reference")
    reference = best[ref_model][ref_mode]["tasks"]
    gaps = {}
    for name, (model, mode) in GAPS.items():
        if model not in best or mode not in best[model]:
            continue
        system = best[model][mode]["tasks"]
        tasks = [t for t in reference if t in system]
        per_task = {t: round(reference[t][metric] - system[t][metric], 4) for t in tasks}

        def gap_over(subset: list[str]) -> float:
            return (float(np.mean([reference[t][metric] for t in subset]) - np.mean([system[t][metric] for t in subset]))
                    if subset else float("nan"))

        gaps[name] = {"reference": f"{ref_model}/{ref_mode}", "system": f"{model}/{mode}", "tasks": per_task,
                      "average": round(gap_over(headline_tasks(tasks)), 4),
                      "averages": {group: round(gap_over(subset), 4)
                                   for group, subset in task_groups(tasks).items() if subset}}
    return gaps


def measured_frames_per_char(contexts: list[dict], features: Path) -> dict:
    """The speech frames per character of the synthesized contexts (mean, 99th percentile, max), to check the
    `evaluate.speech_frames_per_char` that chose the shots."""
    frames = {r["id"]: r["n_frames"] for r in ShardedStore(features).records}
    ratios = [frames[c["id"]] / len(c["text"]) for c in contexts if c["id"] in frames and c["text"]]
    if not ratios:
        return {"contexts": 0}
    return {"contexts": len(ratios), "mean": round(float(np.mean(ratios)), 4),
            "p99": round(float(np.percentile(ratios, 99)), 4), "max": round(float(np.max(ratios)), 4)}
