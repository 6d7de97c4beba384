"""The benchmark task registry (docs/design.md §7, paper Table 6): items from the shipped files in every format,
templates checked by hand on one record per task, seeded few-shot prefixes, and errors naming bad records."""

import json
import os
from pathlib import Path

import pytest

from salad.evaluation.tasks import (
    FAMILY, PAPER_TASKS, TASKS, Item, Task, TaskDataError, fewshot_demos, fewshot_prefix, get_task, hellaswag_preprocess, load_items,
    read_records,
)

REPO = Path(__file__).resolve().parents[2]
NEEDED = {Path(t.eval_file).name for t in TASKS.values() if t.eval_file.startswith("data/raw")} | {
    Path(t.fewshot_file).name for t in TASKS.values() if t.fewshot_file}
CANDIDATES = [Path(p) for p in (os.environ.get("SALAD_BENCHMARKS", ""),) if p] + [
    REPO / "data/raw/benchmarks"]

MMSU = [
    {"id": f"m{i}", "category": cat, "question": f"Question number {i}?",
     "options": [f"option {i}{c}" for c in "abcd"], "label": i % 4}
    for i, cat in enumerate(["computer science", "law", "health", "economics", "history", "biology",
                             "philosophy", "business"])
]


def benchmarks_dir() -> Path:
    for d in CANDIDATES:
        if d.is_dir() and all((d / name).exists() for name in NEEDED):
            return d
    pytest.skip(f"benchmark files {sorted(NEEDED)} not found in {[str(c) for c in CANDIDATES]}")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "data/raw").mkdir(parents=True)
    (root / "data/raw/benchmarks").symlink_to(benchmarks_dir())
    (root / "data/prepared").mkdir()
    (root / "data/prepared/mmsu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MMSU))
    (root / "data/prepared/family").mkdir()
    for name in FAMILY:
        rows = [{"id": f"{name}-{i}", "question": f"Where does person {i} work?", "options": ["a", "b", "c", "d"],
                 "label": i % 4} if name.startswith("world_") else
                {"id": f"{name}-{i}", "context": f"the words before number {i}", "choices": ["is", "are"],
                 "label": i % 2} for i in range(5)]
        (root / f"data/prepared/family/{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def all_pairs():
    return [(name, fmt) for name, task in TASKS.items() for fmt in task.formats if not task.family]


def test_registry_matches_the_paper():
    assert PAPER_TASKS == ("storycloze", "mmsu", "obqa", "hellaswag", "arc_challenge", "piqa")
    assert {n: TASKS[n].paper_shots for n in PAPER_TASKS} == {
        "storycloze": 5, "mmsu": 4, "obqa": 5, "hellaswag": 3, "arc_challenge": 1, "piqa": 5}
    for name in ("mmsu", "obqa", "arc_challenge"):
        assert TASKS[name].formats == ("continuation", "mc_letter", "mc_option")
    for name in ("storycloze", "hellaswag", "piqa"):
        assert TASKS[name].formats == ("continuation",)


def test_the_family_is_zero_shot_continuation_from_prepared_files(root):
    assert FAMILY == ("next_word_broad", "next_word_book", "agreement", "world_qa")
    for name in FAMILY:
        task = TASKS[name]
        assert task.family and task.paper_shots == 0 and task.formats == ("continuation",)
        assert task.eval_file == f"data/prepared/family/{name}.jsonl" and task.fewshot_file is None
        items = load_items(name, "continuation", root, n=None, seed=0)
        assert sorted(i.id for i in items) == sorted(f"{name}/{name}-{i}" for i in range(5))
    item = by_id(root, "world_qa", "continuation", "world_qa/world_qa-1")
    assert (item.context, item.choices, item.label) == ("Question: Where does person 1 work?\nAnswer:",
                                                        ["a", "b", "c", "d"], 1)
    item = by_id(root, "agreement", "continuation", "agreement/agreement-3")
    assert (item.context, item.choices, item.label) == ("the words before number 3", ["is", "are"], 1)


def test_unknown_task_lists_known_names():
    with pytest.raises(KeyError, match="storycloze"):
        get_task("nope")


@pytest.mark.parametrize("name,fmt", all_pairs())
def test_every_task_and_format_builds_valid_items(root, name, fmt):
    items = load_items(name, fmt, root, n=None, seed=0)
    assert len(items) == (len(MMSU) if name == "mmsu" else {
        "storycloze": 1871, "obqa": 500, "hellaswag": 10042, "arc_challenge": 1172, "piqa": 1838}[name])
    assert len({i.id for i in items}) == len(items)
    for item in items:
        assert item.task == name and item.format == fmt and item.id.startswith(name + "/")
        assert 0 <= item.label < len(item.choices) and len(item.choices) >= 2
        assert all(c.strip() for c in item.choices)
        assert not item.context.endswith(" ")
        if fmt == "mc_letter":
            assert item.choices == list("ABCDE"[:len(item.choices)])
        if name in ("mmsu", "obqa", "arc_challenge", "piqa"):
            assert item.context.endswith("\nAnswer:")


def by_id(root, name, fmt, item_id) -> Item:
    return next(i for i in load_items(name, fmt, root, n=None, seed=0) if i.id == item_id)


def test_storycloze_template(root):
    item = by_id(root, "storycloze", "continuation", "storycloze/b929f263-1dcd-4a0b-b267-5d5ff2fe65bb")
    assert item.context == ("My friends all love to go to the club to dance. They think it's a lot of fun and always "
                            "invite. I finally decided to tag along last Saturday. I danced terribly and broke a "
                            "friend's toe.")
    assert item.choices == ["My friends decided to keep inviting me out as I am so much fun.",
                            "The next weekend, I was asked to please stay home."]
    assert item.label == 1


def test_mmsu_templates(root):
    head = "The following are multiple choice questions (with answers) about law.\nQuestion: Question number 1?\n"
    cont = by_id(root, "mmsu", "continuation", "mmsu/m1")
    assert cont.context == head + "Answer:"
    assert cont.choices == ["option 1a", "option 1b", "option 1c", "option 1d"] and cont.label == 1
    mc = by_id(root, "mmsu", "mc_letter", "mmsu/m1")
    assert mc.context == head + "A. option 1a\nB. option 1b\nC. option 1c\nD. option 1d\nAnswer:"
    assert mc.choices == ["A", "B", "C", "D"] and mc.label == 1
    opt = by_id(root, "mmsu", "mc_option", "mmsu/m1")
    assert opt.context == mc.context and opt.choices == cont.choices


def test_obqa_templates(root):
    q = ("A person wants to start saving money so that they can afford a nice vacation at the end of the year. After "
         "looking over their budget and expenses, they decide the best way to save money is to")
    options = ["make more phone calls", "quit eating lunch out", "buy less with monopoly money",
               "have lunch with friends"]
    cont = by_id(root, "obqa", "continuation", "obqa/0")
    assert cont.context == f"Question: {q}\nAnswer:" and cont.choices == options and cont.label == 1
    mc = by_id(root, "obqa", "mc_letter", "obqa/0")
    assert mc.context == (f"Question: {q}\nA. make more phone calls\nB. quit eating lunch out\n"
                          "C. buy less with monopoly money\nD. have lunch with friends\nAnswer:")
    assert mc.choices == ["A", "B", "C", "D"]
    assert by_id(root, "obqa", "mc_option", "obqa/0").choices == options


def test_arc_templates(root):
    q = ("An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely "
         "effect of this increase in rotation?")
    mc = by_id(root, "arc_challenge", "mc_letter", "arc_challenge/Mercury_7175875")
    assert mc.context == (f"Question: {q}\nA. Planetary density will decrease.\nB. Planetary years will become "
                          "longer.\nC. Planetary days will become shorter.\nD. Planetary gravity will become "
                          "stronger.\nAnswer:")
    assert mc.label == 2
    cont = by_id(root, "arc_challenge", "continuation", "arc_challenge/Mercury_7175875")
    assert cont.context == f"Question: {q}\nAnswer:"
    assert cont.choices[2] == "Planetary days will become shorter."


def test_arc_items_with_five_options_get_five_letters(root):
    five = [i for i in load_items("arc_challenge", "mc_letter", root, None, 0) if len(i.choices) == 5]
    assert len(five) == 3
    assert all("\nE. " in i.context and i.choices == list("ABCDE") for i in five)


def test_hellaswag_template_and_preprocess(root):
    item = by_id(root, "hellaswag", "continuation", "hellaswag/0")
    assert item.context == "Roof shingle removal: A man is sitting on a roof. he"
    assert item.choices[3] == "starts pulling up roofing on a roof." and item.label == 3
    bracket = by_id(root, "hellaswag", "continuation", "hellaswag/3505")
    assert "[" not in bracket.context and "like to find loads" in bracket.context
    assert hellaswag_preprocess(" How to x [title] Do y [step] now  ") == "How to x. Do y now"


def test_piqa_template(root):
    item = by_id(root, "piqa", "continuation", "piqa/0")
    assert item.context == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    assert item.choices[0].startswith("Provide the guinea pig with a cage full of a few inches of bedding made of "
                                      "ripped paper strips") and item.label == 0
    assert by_id(root, "piqa", "continuation", "piqa/1").choices == ["replace drawer with bobby pin ",
                                                                     "finish, woodgrain with  bobby pin "]


def test_load_items_is_a_seeded_shuffle_shared_by_formats(root):
    a = load_items("obqa", "continuation", root, n=20, seed=3)
    assert [i.id for i in a] == [i.id for i in load_items("obqa", "continuation", root, n=20, seed=3)]
    assert [i.id for i in a] == [i.id for i in load_items("obqa", "mc_letter", root, n=20, seed=3)]
    assert [i.id for i in a] != [i.id for i in load_items("obqa", "continuation", root, n=20, seed=4)]
    assert [i.id for i in a] != [f"obqa/{k}" for k in range(20)]
    assert len(load_items("mmsu", "continuation", root, n=100, seed=0)) == len(MMSU)


@pytest.mark.parametrize("name,fmt", all_pairs())
def test_fewshot_prefix_is_deterministic_and_excludes_evaluated_items(root, name, fmt):
    items = load_items(name, fmt, root, n=5 if name == "mmsu" else 50, seed=1)
    shots = TASKS[name].paper_shots if name != "mmsu" else 3
    exclude = {i.id for i in items}
    prefix = fewshot_prefix(name, fmt, root, shots, seed=1, exclude_ids=exclude)
    assert prefix == fewshot_prefix(name, fmt, root, shots, seed=1, exclude_ids=exclude)
    assert prefix.endswith("\n\n") and not prefix.endswith("\n\n\n")
    for item in items:
        assert f"{item.context} {item.choices[item.label]}\n\n" not in prefix
    if TASKS[name].fewshot_file is None:
        pool = [i for i in load_items(name, fmt, root, None, 0) if i.id not in exclude]
    else:
        pool = TASKS[name].items(read(root, TASKS[name].fewshot_file), fmt, split="fewshot")
    demos = sorted({f"{d.context} {d.choices[d.label]}\n\n" for d in pool} & set(_blocks(prefix)), key=len,
                   reverse=True)
    rest = prefix
    for _ in range(shots):
        rest = rest[len(next(d for d in demos if rest.startswith(d))):]
    assert rest == ""


def _blocks(prefix: str) -> list[str]:
    """Every substring between demo boundaries, so that pool demos can be matched by set lookup."""
    cuts = [0] + [i + 2 for i in range(len(prefix)) if prefix.startswith("\n\n", i)]
    return [prefix[a:b] for a in cuts for b in cuts if b > a]


def read(root, rel):
    return read_records(root / rel)


def test_fewshot_uses_the_other_items_when_the_pool_is_the_eval_file(root):
    items = load_items("mmsu", "continuation", root, n=5, seed=0)
    prefix = fewshot_prefix("mmsu", "continuation", root, 3, seed=0, exclude_ids={i.id for i in items})
    evaluated = {i.id.split("/")[1] for i in items}
    rest = [r for r in MMSU if r["id"] not in evaluated]
    for r in rest:
        assert f"Question: {r['question']}\nAnswer: {r['options'][r['label']]}\n\n" in prefix
    for r in MMSU:
        if r["id"] in evaluated:
            assert r["question"] not in prefix
    assert prefix.count("The following are multiple choice questions") == 3
    with pytest.raises(ValueError, match="pool has 3 distinct"):
        fewshot_prefix("mmsu", "continuation", root, 4, seed=0, exclude_ids={i.id for i in items})


def test_fewshot_same_records_in_every_format_and_zero_shots(root):
    cont = fewshot_prefix("obqa", "continuation", root, 5, seed=2, exclude_ids=set())
    opt = fewshot_prefix("obqa", "mc_option", root, 5, seed=2, exclude_ids=set())
    questions = [block.split("\n")[0] for block in cont.split("\n\n") if block]
    assert [block.split("\n")[0] for block in opt.split("\n\n") if block] == questions
    assert cont != fewshot_prefix("obqa", "continuation", root, 5, seed=3, exclude_ids=set())
    assert fewshot_prefix("obqa", "continuation", root, 0, seed=2, exclude_ids=set()) == ""


def test_fewer_shots_are_the_first_demonstrations_of_more(root):
    five = fewshot_demos("piqa", "continuation", root, 5, seed=4, exclude_ids=set())
    assert len(five) == 5 and len(set(five)) == 5 and all(d.endswith("\n\n") for d in five)
    for k in range(6):
        assert fewshot_demos("piqa", "continuation", root, k, seed=4, exclude_ids=set()) == five[:k]
    assert fewshot_prefix("piqa", "continuation", root, 3, seed=4, exclude_ids=set()) == "".join(five[:3])


def test_storycloze_demos_come_from_the_validation_split(root):
    prefix = fewshot_prefix("storycloze", "continuation", root, 5, seed=0, exclude_ids=set())
    val = read(root, TASKS["storycloze"].fewshot_file)
    texts = [" ".join(r["input_sentences"]) + " " + r["endings"][r["label"]] + "\n\n" for r in val]
    assert sum(t in prefix for t in texts) == 5


def test_fewshot_ids_do_not_collide_with_evaluated_ids(root):
    pool = TASKS["obqa"].items(read(root, TASKS["obqa"].fewshot_file), "continuation", split="fewshot")
    assert pool[0].id == "obqa/fewshot/0"
    arc = TASKS["arc_challenge"].items(read(root, TASKS["arc_challenge"].fewshot_file), "continuation",
                                       split="fewshot")
    assert len({i.id for i in arc}) == len(arc)


GOOD = {"id": "q7", "category": "law", "question": "Q?", "options": ["a", "b", "c", "d"], "label": 0}


@pytest.mark.parametrize("change,problem", [
    ({"options": ["a", "", "c", "d"]}, "choice 1 is empty"),
    ({"options": ["a", "  ", "c", "d"]}, "choice 1 is empty"),
    ({"label": 4}, "label 4 out of range"),
    ({"label": -1}, "label -1 out of range"),
    ({"label": "0"}, "field 'label' must be int"),
    ({"question": None}, "field 'question' must be str"),
    ({"category": None}, "field 'category' must be str"),
])
def test_bad_records_name_task_record_and_problem(change, problem):
    records = [dict(GOOD, id="q6"), dict(GOOD, **change)]
    with pytest.raises(TaskDataError, match=problem) as e:
        TASKS["mmsu"].items(records, "mc_letter")
    assert "'mmsu'" in str(e.value) and "record 1" in str(e.value) and "mmsu/q7" in str(e.value)


def test_missing_field_is_named():
    bad = {k: v for k, v in GOOD.items() if k != "options"}
    with pytest.raises(TaskDataError, match=r"record 0 \(id 'mmsu/q7'\): missing field 'options'"):
        TASKS["mmsu"].items([bad], "continuation")
    with pytest.raises(TaskDataError, match="'piqa'.*record 0.*missing field 'sol2'"):
        TASKS["piqa"].items([{"idx": 0, "goal": "g", "sol1": "s", "label": 0}], "continuation")
    with pytest.raises(TaskDataError, match="'hellaswag'.*hellaswag/5.*choice 2 is empty"):
        TASKS["hellaswag"].items([{"idx": 5, "activity_label": "A", "ctx": "c", "endings": ["x", "y", "[z]", "w"],
                                   "label": 0}], "continuation")


def test_duplicate_ids_are_an_error():
    with pytest.raises(TaskDataError, match="record 1 \\(id 'mmsu/q7'\\): duplicate id"):
        TASKS["mmsu"].items([GOOD, GOOD], "continuation")


def test_unknown_format_and_missing_file(root, tmp_path):
    with pytest.raises(ValueError, match="formats are"):
        TASKS["piqa"].items([], "mc_letter")
    with pytest.raises(FileNotFoundError, match="salad prepare"):
        load_items("mmsu", "continuation", tmp_path, n=1, seed=0)


def test_task_is_declarative():
    t = get_task("obqa")
    assert isinstance(t, Task) and t.eval_file == "data/raw/benchmarks/openbookqa_test.jsonl.gz"
    assert t.fewshot_file == "data/raw/benchmarks/openbookqa_train.jsonl.gz"
    assert TASKS["mmsu"].eval_file == "data/prepared/mmsu.jsonl" and TASKS["mmsu"].fewshot_file is None
