"""The benchmark harness (salad.evaluation.benchmarks, docs/design.md §7): shots per task chosen to fit the speech
window, one demonstration draw per task, spoken contexts keyed by text (deduplicated), the runs of `score_items`
(text, speech, cascade, counted skips), the one best-format rule and the Table 3 / Table 5 gaps."""

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from salad.config import Params, params_from_dict
from salad.evaluation.benchmarks import (
    GAPS, TEXT_BYTES_PER_TOKEN, average_accuracy, benchmark_gaps, best_format, best_format_accuracy, best_formats,
    context_id, contexts_of, eval_contexts, eval_items, eval_plan, estimated_speech_positions, first_items,
    score_items, score_text, scored_record, skipped_record, speech_window, spoken_text, summarize, task_shots,
)
from salad.evaluation.cascade import Cascade, OracleTranscriber
from salad.evaluation.scoring import accuracy_metrics
from salad.evaluation.tasks import PAPER_TASKS, TASKS, Item, fewshot_prefix, load_items
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.model.teacher import load_teacher
from salad.speech.tts import EspeakTTS

REPO = Path(__file__).resolve().parents[2]
NEEDED = {Path(t.eval_file).name for t in TASKS.values() if t.eval_file.startswith("data/raw")} | {
    Path(t.fewshot_file).name for t in TASKS.values() if t.fewshot_file}
CANDIDATES = [Path(p) for p in (os.environ.get("SALAD_BENCHMARKS", ""),) if p] + [
    REPO / "data/raw/benchmarks", Path("/work/shared/data/benchmarks")]
MMSU = [{"id": f"m{i}", "category": "law", "question": f"Question number {i}?",
         "options": [f"option {i}{c}" for c in "abcd"], "label": i % 4} for i in range(30)]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    bench = next((d for d in CANDIDATES if d.is_dir() and all((d / n).exists() for n in NEEDED)), None)
    if bench is None:
        pytest.skip(f"benchmark files {sorted(NEEDED)} not found in {[str(c) for c in CANDIDATES]}")
    root = tmp_path_factory.mktemp("repo")
    (root / "data/raw").mkdir(parents=True)
    (root / "data/raw/benchmarks").symlink_to(bench)
    (root / "data/prepared").mkdir()
    (root / "data/prepared/mmsu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MMSU))
    return root


def make_params(tasks=("obqa",), items=20, shots=5, window=100_000, fraction=1.0, fpc=0.9, voice=None) -> Params:
    return params_from_dict({
        "teacher": {"context": window}, "train": {"max_len": window},
        "evaluate": {"tasks": list(tasks), "items": items, "shots": shots, "speech_frames_per_char": fpc,
                     "shots_fit_fraction": fraction, "second_voice": voice, "asr_model": None}})


def estimates(params: Params, root: Path, task: str, k: int) -> list[int]:
    """Estimated speech positions of every item and format of `task` with k demonstrations, from public pieces."""
    out = []
    for fmt in TASKS[task].formats:
        items = load_items(task, fmt, root, params.evaluate.items, params.seed)
        prefix = fewshot_prefix(task, fmt, root, k, params.seed, exclude_ids={i.id for i in items})
        out += [estimated_speech_positions(spoken_text(i, prefix), i.choices, params.evaluate.speech_frames_per_char)
                for i in items]
    return out


def test_estimate_counts_frames_of_the_text_and_tokens_of_the_longest_choice():
    # 100 chars x 0.9 = 90 frames; " abcdefg" = 8 bytes / 2 = 4 tokens; 1 document start, the last token not fed
    assert estimated_speech_positions("x" * 100, ["abcdefg", "a"], 0.9) == 1 + 90 + 4 - 1
    assert estimated_speech_positions("x" * 101, ["a"], 0.9) == 1 + 91 + 1 - 1  # ceil(90.9)
    assert TEXT_BYTES_PER_TOKEN == 2.0


def test_shots_are_the_papers_capped_when_everything_fits(root):
    p = make_params(tasks=PAPER_TASKS, items=10)
    assert task_shots(p, root) == {n: TASKS[n].paper_shots for n in PAPER_TASKS}  # SC 5, MMSU 4, OBQA 5, HS 3, ...
    assert task_shots(make_params(tasks=PAPER_TASKS, items=10, shots=2), root) == {
        n: min(2, TASKS[n].paper_shots) for n in PAPER_TASKS}
    assert set(task_shots(make_params(tasks=("arc_challenge", "piqa"), shots=0), root).values()) == {0}


def test_shots_shrink_to_what_fits_the_speech_window(root):
    p = make_params()
    for k in (3, 1):
        window = max(estimates(p, root, "obqa", k))
        assert task_shots(make_params(window=window), root) == {"obqa": k}
        assert task_shots(make_params(window=window - 1), root) == {"obqa": k - 1}
    assert speech_window(params_from_dict({"teacher": {"context": 300}, "train": {"max_len": 200}})) == 200
    # a fraction: the window that fits the median item at 5 shots gives 5 shots when half the items must fit
    at5 = sorted(estimates(p, root, "obqa", 5))
    window = at5[len(at5) // 2]
    assert task_shots(make_params(window=window, fraction=0.5), root) == {"obqa": 5}
    assert task_shots(make_params(window=window, fraction=1.0), root)["obqa"] < 5


def test_one_demonstration_draw_per_task_for_every_item_and_format(root):
    p = make_params(window=max(estimates(make_params(), root, "obqa", 2)))
    triples, shots = eval_plan(p, root)
    assert shots == {"obqa": 2}
    prefixes = {}
    for fmt, item, prefix in triples:
        assert prefixes.setdefault(fmt, prefix) == prefix  # the same demonstrations for every item of a format
    ids = {i.id for _, i, _ in triples}
    for fmt, prefix in prefixes.items():
        assert prefix == fewshot_prefix("obqa", fmt, root, 2, p.seed, exclude_ids=ids)
        assert prefix.count("\n\n") == 2
        # fewer shots keep the first demonstrations: the 2-shot prefix starts the 5-shot one
        assert fewshot_prefix("obqa", fmt, root, 5, p.seed, exclude_ids=ids).startswith(prefix)
    questions = {fmt: [d.split("\n")[0] for d in prefix.split("\n\n") if d] for fmt, prefix in prefixes.items()}
    assert questions["continuation"] == questions["mc_letter"] == questions["mc_option"]
    assert [t[1].id for t in triples if t[0] == "mc_letter"] == [t[1].id for t in triples if t[0] == "mc_option"]
    assert eval_items(p, root) == triples


def test_every_item_evaluated_leaves_the_demonstrations_out_when_the_pool_is_the_eval_file(root):
    p = make_params(tasks=("mmsu", "obqa"), items=10_000)  # every item, as the paper profiles
    triples, shots = eval_plan(p, root)
    assert shots == {"mmsu": 4, "obqa": 5}
    prefix = next(pre for f, i, pre in triples if i.task == "mmsu" and f == "continuation")
    demos = [r for r in MMSU if f"Question: {r['question']}\nAnswer: {r['options'][r['label']]}\n\n" in prefix]
    assert len(demos) == 4
    evaluated = {i.id for f, i, _ in triples if i.task == "mmsu"}
    assert evaluated == {f"mmsu/{r['id']}" for r in MMSU} - {f"mmsu/{r['id']}" for r in demos}
    for fmt in TASKS["mmsu"].formats:  # the same items in every format
        assert {i.id for f, i, _ in triples if i.task == "mmsu" and f == fmt} == evaluated
    # the demonstrations do not depend on how many items are evaluated
    assert eval_plan(make_params(tasks=("mmsu",), items=5), root)[0][0][2] == prefix
    assert len({i.id for f, i, _ in triples if i.task == "obqa"}) == 500  # obqa's demos come from its train file


def test_spoken_contexts_are_deduplicated_by_text(root):
    p0 = make_params(items=8, shots=0)
    triples = eval_items(p0, root)
    contexts = eval_contexts(p0, root)
    assert len(triples) == 24 and len(contexts) == 16  # mc_letter and mc_option share the text at 0 shots
    by_id = {c["id"]: c["text"] for c in contexts}
    assert len(by_id) == len(contexts)
    for fmt, item, prefix in triples:
        assert by_id[context_id(item, prefix)] == (prefix + item.context).strip()
    letter = {i.id: context_id(i, pre) for f, i, pre in triples if f == "mc_letter"}
    option = {i.id: context_id(i, pre) for f, i, pre in triples if f == "mc_option"}
    assert letter == option
    # with demonstrations the formats differ (their demonstrations end in a letter or the option text)
    assert len(eval_contexts(make_params(items=8, shots=1), root)) == 24
    assert contexts_of(triples) == contexts


# --- scoring runs ---------------------------------------------------------------------------------------------

class Features(dict):
    """Features by context id, as FeatureReader serves them."""

    dir = Path("features")


@pytest.fixture(scope="module")
def student(teacher_dir):
    torch.manual_seed(0)
    lm = load_teacher(teacher_dir)
    cfg = AdapterConfig(feature_dim=3, lm_hidden=lm.config.hidden_size, layers=1, width=16, heads=2, kv_heads=1,
                        mlp=32, max_frames=1024)
    return SpeechAdaptedLM.from_teacher(teacher_dir, cfg).eval()


def toy_items():
    items = [Item("obqa", "mc_letter", "obqa/1", "Question: Where do fish live?\nA. water\nB. sky\nAnswer:",
                  ["A", "B"], 0),
             Item("obqa", "mc_option", "obqa/1", "Question: Where do fish live?\nA. water\nB. sky\nAnswer:",
                  ["water", "sky"], 0),
             Item("obqa", "continuation", "obqa/2", "Question: What is hot?\nAnswer:", ["fire", "ice"], 0)]
    prefix = "Question: Is it?\nAnswer: yes\n\n"
    return [(it.format, it, prefix) for it in items]


@torch.no_grad()
def test_score_items_runs_text_speech_and_the_oracle_cascade(student, tokenizer, teacher_dir):
    teacher = load_teacher(teacher_dir)
    triples = toy_items()
    rng = np.random.default_rng(0)
    features = Features({context_id(i, p): rng.standard_normal((20, 3)).astype(np.float16) for _, i, p in triples})
    # the item whose context is too long: 600 frames + document start > the LM's 512 positions
    long_id = context_id(triples[2][1], triples[2][2])
    features[long_id] = np.zeros((600, 3), dtype=np.float16)
    cascade = Cascade(teacher, OracleTranscriber())
    runs = [("teacher", "text", teacher), ("student", "speech", student), ("cascade", "speech", cascade)]
    records = score_items(triples, tokenizer, runs, features)
    assert [r["mode"] for r in records["cascade"]] == ["speech"] * 3
    for t, c, (fmt, item, prefix) in zip(records["teacher"], records["cascade"], triples):
        assert c["scores"] == t["scores"]  # a perfect transcript is the teacher's own text
        assert t["scores"] == [round(s, 5) for s in score_text(teacher, tokenizer, prefix + item.context,
                                                                item.choices)]
    assert cascade.transcripts == {context_id(i, p): spoken_text(i, p) for _, i, p in triples}
    assert len(cascade.transcripts) == 2  # mc_letter and mc_option share their spoken context (and transcript)
    speech = records["student"]
    assert speech[2]["skipped"].startswith("context + longest continuation needs 60")  # 1 + 600 + ... > 512
    assert all(r["accuracy"] == r["acc_norm"] for r in speech[:2])  # OBQA's convention
    summary = summarize(speech)
    assert summary["obqa"]["continuation"]["speech"]["skipped"] == 1
    assert summary["obqa"]["continuation"]["speech"]["n"] == 0
    assert math.isnan(summary["obqa"]["continuation"]["speech"]["acc_norm"])
    missing = r"no speech features in features for .obqa/1. \(mc_letter, context .ctx-[0-9a-f]{24}.\); rerun .salad"
    with pytest.raises(ValueError, match=missing):
        score_items(triples, tokenizer, [("student", "speech", student)], Features())


# --- best formats and gaps -------------------------------------------------------------------------------------

def summary(acc_norm, n=10):
    """A paper benchmark's summary: its headline accuracy is acc_norm."""
    return {"n": n, "skipped": 0, "acc": 0.0, "acc_norm": acc_norm, "acc_bytes": 0.0, "accuracy": acc_norm,
            "chance": 0.25}


RESULTS = {
    "teacher": {"obqa": {"continuation": {"text": summary(0.5)}, "mc_letter": {"text": summary(0.7)},
                         "mc_option": {"text": summary(0.7)}},
                "storycloze": {"continuation": {"text": summary(0.8)}}},
    "student": {"obqa": {"continuation": {"text": summary(0.6), "speech": summary(0.4)},
                         "mc_letter": {"text": summary(0.5), "speech": summary(float("nan"), n=0)},
                         "mc_option": {"text": summary(0.3), "speech": summary(0.45)}},
                "storycloze": {"continuation": {"text": summary(0.75), "speech": summary(0.6)}}},
}


def test_best_format_per_model_mode_and_task():
    best = best_formats(RESULTS)
    teacher = best["teacher"]["text"]
    assert teacher["tasks"]["obqa"] == {"format": "mc_letter", "accuracy": 0.7, "n": 10}  # a tie: Table 6 order
    assert teacher["average"] == pytest.approx((0.7 + 0.8) / 2)
    speech = best["student"]["speech"]["tasks"]
    assert speech["obqa"]["format"] == "mc_option"  # NaN (nothing scored) is passed over
    assert best["student"]["text"]["tasks"]["obqa"]["format"] == "continuation"
    assert best["student"]["speech"]["average"] == pytest.approx((0.45 + 0.6) / 2)


def test_best_format_is_the_first_of_equal_values_passing_over_nan():
    formats = {"a": {"speech": summary(0.4)}, "b": {"speech": summary(0.6), "text": summary(0.9)},
               "c": {"speech": summary(0.6)}, "d": {"speech": summary(float("nan"), n=0)}}
    assert best_format(formats, "speech") == "b"
    assert best_format(formats, "text") == "b"
    assert best_format({"d": formats["d"]}, "speech") is None
    assert best_format(formats, "voice") is None


def test_best_format_accuracy_is_per_task_in_results_order_and_averaged_like_best_formats():
    student = RESULTS["student"]
    assert best_format_accuracy(student, "speech") == {"obqa": 0.45, "storycloze": 0.6}
    assert best_format_accuracy(RESULTS["teacher"], "speech") == {}  # no task was run in speech mode
    assert math.isnan(best_format_accuracy({"obqa": {"f": {"speech": summary(float("nan"), n=0)}}}, "speech")["obqa"])
    best = best_formats(RESULTS)
    for model, modes in best.items():
        for mode, summary_ in modes.items():
            per_task = best_format_accuracy(RESULTS[model], mode)
            assert per_task == {t: e["accuracy"] for t, e in summary_["tasks"].items()}
            assert summary_["average"] == round(average_accuracy(per_task), 4)


def test_gaps_are_teacher_text_minus_the_system_in_best_formats():
    gaps = benchmark_gaps(best_formats(RESULTS))
    assert set(gaps) == {"speech", "text"}  # no cascade or second voice was evaluated
    assert gaps["speech"]["tasks"] == pytest.approx({"obqa": 0.7 - 0.45, "storycloze": 0.8 - 0.6})
    assert gaps["speech"]["average"] == pytest.approx(((0.7 - 0.45) + (0.8 - 0.6)) / 2)
    assert gaps["text"]["tasks"] == pytest.approx({"obqa": 0.7 - 0.6, "storycloze": 0.8 - 0.75})
    assert (gaps["speech"]["reference"], gaps["speech"]["system"]) == ("teacher/text", "student/speech")
    assert GAPS["speech"] == ("student", "speech") and GAPS["text"] == ("student", "text")
    with pytest.raises(ValueError, match="reference"):
        benchmark_gaps(best_formats({"student": RESULTS["student"]}))


def test_first_items_keeps_the_first_n_of_every_task_and_format():
    def item(task, fmt, i):
        return Item(task=task, format=fmt, id=f"{task}/{i}", context="c", choices=["a", "b"], label=0)

    items = [(fmt, item(task, fmt, i), "") for task in ("obqa", "piqa") for fmt in ("f", "g") for i in range(4)]
    kept = first_items(items, 2)
    assert [(f, it.id) for f, it, _ in kept] == [(f, f"{t}/{i}") for t in ("obqa", "piqa") for f in ("f", "g")
                                                 for i in range(2)]
    assert first_items(items, 10) == items
    # a family task takes its own count, and 0 drops a paper benchmark
    items += [("continuation", item("world_qa", "continuation", i), "") for i in range(4)]
    assert [it.id for _, it, _ in first_items(items, 0, 3)] == [f"world_qa/{i}" for i in range(3)]


def test_first_items_keeps_the_demonstrations():
    triples = toy_items()
    assert first_items(triples, 1) == triples  # one item per task and format here


def test_the_default_frames_per_char_bounds_real_espeak_speech(root):
    """The shots are chosen from an estimate: the default ratio must not undercount the fixed voice's frames on
    average, and single contexts exceed it by little (the fit fraction's tolerance; measured on the default world's
    1000 contexts: mean 0.79, obqa continuation up to 0.95; only MMSU's spoken formulas and numbers go far beyond)."""
    p = dataclasses.replace(Params(), evaluate=dataclasses.replace(Params().evaluate, tasks=("obqa", "piqa"),
                                                                   items=4))
    tts = EspeakTTS(voice=p.synthesize.voice, rate=p.synthesize.rate)
    contexts = eval_contexts(p, root)
    ratios = np.array([tts.synthesize(c["text"]).duration * 12.5 / len(c["text"]) for c in contexts])
    assert len(ratios) == 4 * 4  # obqa: 3 formats (1 shot at least, so no shared text), piqa: 1
    assert ratios.mean() <= p.evaluate.speech_frames_per_char
    assert ratios.max() <= 1.1 * p.evaluate.speech_frames_per_char


# --- the scoring convention -------------------------------------------------------------------------------------

def test_each_task_states_its_headline_metric_and_summaries_follow_it():
    assert {TASKS[t].metric for t in PAPER_TASKS} == {"acc_norm"}  # the paper's normalized log-probability
    assert {t.metric for t in TASKS.values() if t.family} == {"acc"}
    # "a" wins by summed log-likelihood, "longer" by log-likelihood per character
    records = [{"task": task, "format": "continuation", "mode": "text", "id": "1", "n_choices": 2,
                **accuracy_metrics([-3.0, -4.0], ["a", "longer"], 0, TASKS[task].metric)}
               for task in ("piqa", "agreement")]
    summary = summarize(records)
    assert summary["piqa"]["continuation"]["text"]["accuracy"] == 0.0  # acc_norm picked "longer"
    assert summary["agreement"]["continuation"]["text"]["accuracy"] == 1.0  # acc picked "a"
    assert best_formats({"m": summary})["m"]["text"]["tasks"]["agreement"]["accuracy"] == 1.0


def test_scored_records_carry_every_metric_and_old_records_still_summarize():
    """One record builder for every evaluation; a per-item file written before tasks stated their metric (no
    "accuracy" field, e.g. a baseline's --reference records) summarizes to the same headline."""
    item = Item(task="agreement", format="continuation", id="a-1", context="The dogs", choices=["are", "is"],
                label=0)
    record = scored_record(item, "continuation", "speech", [-3.000004, -2.5])
    # by summed log-likelihood "is" wins; per character (and byte) "are": agreement's headline is acc
    assert record == {"task": "agreement", "format": "continuation", "mode": "speech", "id": "a-1", "label": 0,
                      "n_choices": 2, "scores": [-3.0, -2.5], "acc": 0.0, "acc_norm": 1.0, "acc_bytes": 1.0,
                      "pred": 1, "pred_norm": 0, "pred_bytes": 0, "accuracy": 0.0}
    old = {k: v for k, v in record.items() if k != "accuracy"}
    assert summarize([old]) == summarize([record])
    skipped = skipped_record(item, "continuation", "speech", ValueError("too long"))
    assert summarize([record, skipped])["agreement"]["continuation"]["speech"]["skipped"] == 1


def test_a_task_with_an_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="metric must be one of"):
        dataclasses.replace(TASKS["agreement"], metric="f1")
    with pytest.raises(ValueError, match="metric must be one of"):
        accuracy_metrics([0.0, 1.0], ["a", "b"], 0, "f1")
