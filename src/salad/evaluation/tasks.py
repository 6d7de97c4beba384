"""Benchmark task registry: the six multiple-choice tasks of the paper (docs/design.md §7, paper Appendix A.4 / Table 6)
and the miniature family (`FAMILY`), tasks the miniature teacher can do, built by `prepare` (salad.data.family,
salad.data.world).

Each task is a small declarative `Task`: where its evaluation and few-shot records live, which prompt formats the
paper defines for it, how many shots the paper used, and a parser from one raw record to a neutral `_Doc`
(question, options, gold index, optional topic). Rendering a `_Doc` into an `Item` in a given format is shared,
so every task with the same Table 6 layout gets exactly the same strings.

Templates (Table 6; its text is OCR'd, so the exact strings below are our reading of it). The context always ends
where the answer starts; the scorer adds the lm-evaluation-harness target delimiter " " before each choice, which
gives the table's "Answer: <answer>" and "<story prefix> <answer>".

- ``plain`` layout (StoryCloze, HellaSwag), format ``continuation``: context = ``<prefix>``, choices = endings.
- ``qa`` layout (OBQA, ARC-Challenge, PIQA, MMSU; MMSU adds the topic line
  ``"The following are multiple choice questions (with answers) about <topic>.\\n"`` in front):

  - ``continuation``: ``"Question: <question>\\nAnswer:"``, choices = option texts;
  - ``mc_letter``: ``"Question: <question>\\nA. <A>\\nB. <B>\\n...\\nAnswer:"``, choices = ``["A", "B", ...]``;
  - ``mc_option``: the same context, choices = option texts.

  Letters are positional (A, B, C, ...) for every record, also for ARC items whose original labels were
  "1".."4", and an ARC item with 3 or 5 options lists 3 or 5 lines.

The miniature family, zero-shot, continuation format only (their records are written by `prepare`, one file each
under data/prepared/family/; the recipes are in salad.data.family and salad.data.world):

- ``next_word_broad`` / ``next_word_book`` (plain): 10-30 words of a held-out broad / book document, the true next
  word against 3 words of its frequency band (4 choices);
- ``agreement`` (plain): the words before a verb form (is/are, was/were, has/have), the form against its
  counterpart (2 choices, the same number of items per form);
- ``world_qa`` (qa): "Question: Where does <person> work?\nAnswer:" (or where they were born, or what they always
  carry) about a person of the seeded world whose facts the teacher read only as statements; the true value against
  3 other people's values (4 choices).

Per-task choices, where the table is ambiguous or our data differs from what lm-eval sees:

- StoryCloze: the four story sentences joined with " " (as lm-eval's storycloze), the two endings as choices.
- HellaSwag: lm-eval's query ``preprocess(activity_label + ": " + ctx)`` and ``preprocess(ending)``, where
  preprocess strips, turns " [title]" into ". ", drops bracketed tokens and replaces "  " by " " (one pass, as
  lm-eval). Deviations forced by the shipped file (data/SOURCES.md, caveats): lm-eval builds ctx as
  ``ctx_a + " " + ctx_b.capitalize()``, but the file has only the joined ``ctx`` (ctx_b not capitalised), so the
  first letter of ctx_b keeps its original case ("... on a roof. he" where lm-eval has "... on a roof. He"); and its
  text was already cleaned by a similar recipe upstream, so applying lm-eval's preprocess again mostly changes
  nothing (it still removes the bracketed tokens left in 18 items, as lm-eval would).
- PIQA: the table's OCR shows only "<question>\\n<answer>"; we use lm-eval's PIQA prompt
  ``"Question: <goal>\\nAnswer:"``, the same Question/Answer layout as the other QA tasks. Solutions are kept
  unstripped (some end in a space), as lm-eval does.
- MMSU: the topic is the MMLU-Pro category as written there (e.g. "computer science").

Few-shot pools: StoryCloze -> its 2016 validation split (no train split exists); ARC -> arc_challenge_train;
OBQA -> openbookqa_train; MMSU, HellaSwag and PIQA -> the other items of the evaluated file (MMSU has no separate dev
split in our rebuild; HellaSwag and PIQA ship no train split), excluding every evaluated item by id. Demonstrations
are drawn once per task and seed, independently of the format, so all formats of a task see the same demo records,
and in one seeded order, so k shots are the first k of any larger number. How many a task gets (its `paper_shots`,
capped and cut to the speech window) is decided by salad.evaluation.benchmarks.task_shots.

Item ids are ``"<task>/<key>"`` for records of the evaluated file and ``"<task>/<split>/<key>"`` for records of a
separate few-shot file, where ``<key>`` is the record's own id field (``story_id``, ``id``, ``source_index``,
``idx``; ARC test has ``id``, ARC train uses ``source_index`` because 63 of its ids are null and one is
duplicated) or, if the record has none, its 0-based line index. They are stable for a given data file, and
duplicate ids within a file are an error.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from salad.evaluation.scoring import ACCURACIES
from salad.storage.atomic import read_jsonl

FORMATS = ("continuation", "mc_letter", "mc_option")
"""All prompt formats; a task has the subset that Table 6 gives it."""
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FEWSHOT_SPLIT = "fewshot"
"""The `<split>` part of ids of records read from a task's separate few-shot file."""


class TaskDataError(ValueError):
    """A raw record that cannot become an item; the message names the task, the record and the problem."""


@dataclass(frozen=True)
class Item:
    """One evaluated question in one prompt format.

    `context` runs up to and including the point where the answer starts (e.g. ends with "Answer:"), without
    few-shot demonstrations; `choices` are the continuations to score, without the leading " " that the scorer
    adds (lm-eval's target delimiter); `label` indexes `choices`.
    """

    task: str
    format: str
    id: str
    context: str
    choices: list[str]
    label: int


@dataclass(frozen=True)
class _Doc:
    """A record reduced to what the templates need."""

    query: str
    """The question (qa layout) or the whole text before the answer (plain layout)."""
    options: list[str]
    label: int
    topic: str | None = None


class _Bad(Exception):
    """Raised by parsers; `Task.items` adds the task and record to the message."""


def _get(record: dict, name: str, kind: type) -> Any:
    if name not in record:
        raise _Bad(f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"field {name!r} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _strings(record: dict, name: str) -> list[str]:
    values = _get(record, name, list)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise _Bad(f"{name}[{i}] must be str, got {type(v).__name__} {v!r}")
    return values


def hellaswag_preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag text cleaning (brackets are WikiHow artifacts)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _storycloze(r: dict) -> _Doc:
    return _Doc(" ".join(_strings(r, "input_sentences")), _strings(r, "endings"), _get(r, "label", int))


def _mmsu(r: dict) -> _Doc:
    return _Doc(_get(r, "question", str), _strings(r, "options"), _get(r, "label", int),
                topic=_get(r, "category", str))


def _obqa(r: dict) -> _Doc:
    return _Doc(_get(r, "question_stem", str), _strings(r, "choices"), _get(r, "label", int))


def _arc(r: dict) -> _Doc:
    return _Doc(_get(r, "question", str), _strings(r, "choices"), _get(r, "label", int))


def _hellaswag(r: dict) -> _Doc:
    query = hellaswag_preprocess(_get(r, "activity_label", str) + ": " + _get(r, "ctx", str))
    return _Doc(query, [hellaswag_preprocess(e) for e in _strings(r, "endings")], _get(r, "label", int))


def _piqa(r: dict) -> _Doc:
    return _Doc(_get(r, "goal", str), [_get(r, "sol1", str), _get(r, "sol2", str)], _get(r, "label", int))


def _plain_choice(r: dict) -> _Doc:
    return _Doc(_get(r, "context", str), _strings(r, "choices"), _get(r, "label", int))


def _question(r: dict) -> _Doc:
    return _Doc(_get(r, "question", str), _strings(r, "options"), _get(r, "label", int))


def _render_qa(doc: _Doc, fmt: str) -> tuple[str, list[str]]:
    header = (f"The following are multiple choice questions (with answers) about {doc.topic}.\n"
              if doc.topic is not None else "")
    if fmt == "continuation":
        return f"{header}Question: {doc.query}\nAnswer:", list(doc.options)
    if len(doc.options) > len(LETTERS):
        raise _Bad(f"{len(doc.options)} options do not fit letters A-Z")
    letters = list(LETTERS[:len(doc.options)])
    lines = "".join(f"{letter}. {option}\n" for letter, option in zip(letters, doc.options))
    context = f"{header}Question: {doc.query}\n{lines}Answer:"
    return context, (letters if fmt == "mc_letter" else list(doc.options))


def _render_plain(doc: _Doc, fmt: str) -> tuple[str, list[str]]:
    return doc.query, list(doc.options)


_LAYOUTS: dict[str, Callable[[_Doc, str], tuple[str, list[str]]]] = {"qa": _render_qa, "plain": _render_plain}


@dataclass(frozen=True)
class Task:
    """A declarative benchmark definition; files are relative to the repository root."""

    name: str
    eval_file: str
    fewshot_file: str | None
    """None: demonstrations come from the other items of `eval_file`."""
    formats: tuple[str, ...]
    paper_shots: int
    parse: Callable[[dict], _Doc] = field(repr=False)
    layout: str = "qa"
    keys: tuple[str, ...] = ()
    """Record fields that identify a record, first non-null wins; the line index if none is present."""
    family: bool = False
    """A task of the miniature family (built by `prepare`), not one of the paper's benchmarks."""
    metric: str = "acc_norm"
    """The task's scoring convention, the accuracy reported as its headline (`salad.evaluation.scoring`): acc_norm
    for the paper's benchmarks (the paper scores "the normalized log probability of each answer"); acc for the
    family, whose choices are single words or short fixed phrases: dividing a word's log-likelihood by its
    characters rewards long words (next_word_broad, teacher text: 0.615 by acc, 0.487 by acc_norm)."""

    def __post_init__(self):
        if self.metric not in ACCURACIES:
            raise ValueError(f"task {self.name!r}: metric must be one of {ACCURACIES}, got {self.metric!r}")

    def key(self, record: dict, index: int) -> str:
        for k in self.keys:
            if isinstance(record, dict) and record.get(k) is not None:
                return str(record[k])
        return str(index)

    def items(self, records: list[dict], format: str, split: str | None = None) -> list[Item]:
        """Items of `records` in `format`. `split` (e.g. "fewshot") goes into the ids of records that do not come
        from `eval_file`, so that they never collide with evaluated ids. Bad records raise `TaskDataError`."""
        if format not in self.formats:
            raise ValueError(f"task {self.name!r} has no format {format!r}; its formats are {list(self.formats)}")
        out: list[Item] = []
        seen: set[str] = set()
        for index, record in enumerate(records):
            key = self.key(record, index)
            item_id = f"{self.name}/{key}" if split is None else f"{self.name}/{split}/{key}"
            try:
                if item_id in seen:
                    raise _Bad("duplicate id")
                seen.add(item_id)
                if not isinstance(record, dict):
                    raise _Bad(f"record must be a JSON object, got {type(record).__name__}")
                doc = self.parse(record)
                if len(doc.options) < 2:
                    raise _Bad(f"needs at least 2 choices, got {len(doc.options)}")
                for i, option in enumerate(doc.options):
                    if not option.strip():
                        raise _Bad(f"choice {i} is empty")
                if not 0 <= doc.label < len(doc.options):
                    raise _Bad(f"label {doc.label} out of range for {len(doc.options)} choices")
                context, choices = _LAYOUTS[self.layout](doc, format)
            except _Bad as e:
                where = f" ({split} split)" if split else ""
                raise TaskDataError(f"task {self.name!r}{where}, record {index} (id {item_id!r}): {e}") from None
            out.append(Item(self.name, format, item_id, context, choices, doc.label))
        return out


_BENCH = "data/raw/benchmarks"

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("storycloze", f"{_BENCH}/storycloze_2016_test.jsonl.gz", f"{_BENCH}/storycloze_2016_validation.jsonl.gz",
         ("continuation",), 5, parse=_storycloze, layout="plain", keys=("story_id",)),
    Task("mmsu", "data/prepared/mmsu.jsonl", None, FORMATS, 4, parse=_mmsu, keys=("id",)),
    Task("obqa", f"{_BENCH}/openbookqa_test.jsonl.gz", f"{_BENCH}/openbookqa_train.jsonl.gz",
         FORMATS, 5, parse=_obqa, keys=("source_index",)),
    Task("hellaswag", f"{_BENCH}/hellaswag_validation.jsonl.gz", None,
         ("continuation",), 3, parse=_hellaswag, layout="plain", keys=("idx",)),
    Task("arc_challenge", f"{_BENCH}/arc_challenge_test.jsonl.gz", f"{_BENCH}/arc_challenge_train.jsonl.gz",
         FORMATS, 1, parse=_arc, keys=("source_index", "id")),
    Task("piqa", f"{_BENCH}/piqa_validation.jsonl.gz", None, ("continuation",), 5, parse=_piqa, keys=("idx",)),
    *(Task(name, f"data/prepared/family/{name}.jsonl", None, ("continuation",), 0, parse=_plain_choice,
           layout="plain", keys=("id",), family=True, metric="acc")
      for name in ("next_word_broad", "next_word_book", "agreement")),
    Task("world_qa", "data/prepared/family/world_qa.jsonl", None, ("continuation",), 0, parse=_question, keys=("id",),
         family=True, metric="acc"),
)}

PAPER_TASKS = tuple(name for name, task in TASKS.items() if not task.family)
"""The paper's six benchmarks."""
FAMILY = tuple(name for name, task in TASKS.items() if task.family)
"""The miniature family: the tasks the miniature teacher can do (the miniature world's headline accuracy)."""


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None


def read_records(path: Path) -> list[dict]:
    """JSON lines from `path` (gzip if it ends in .gz); errors name the file and line."""
    if not path.exists():
        hint = " (it is written by `salad prepare`)" if "prepared" in path.parts else ""
        raise FileNotFoundError(f"benchmark file {path} does not exist{hint}")
    try:
        return read_jsonl(path)
    except ValueError as e:
        raise TaskDataError(str(e)) from None


def load_items(task: str, format: str, root: Path, n: int | None, seed: int) -> list[Item]:
    """The first `n` items (all if None or fewer exist) of a seeded shuffle of the task's evaluation file.

    The order depends on the task and seed only, not on the format, so every format evaluates the same records.
    All records are validated, not only the `n` returned.
    """
    t = get_task(task)
    if n is not None and n <= 0:
        raise ValueError(f"n must be positive or None, got {n}")
    items = t.items(read_records(Path(root) / t.eval_file), format)
    random.Random(f"{task}/items/{seed}").shuffle(items)
    return items if n is None else items[:n]


def fewshot_items(task: str, format: str, root: Path, shots: int, seed: int, exclude_ids: set[str]) -> list[Item]:
    """The `shots` demonstration records in `format`, as items: a seeded sample (task and seed only, so all formats
    get the same records) from the task's few-shot pool minus `exclude_ids` (the evaluated items' ids).

    The draw is one seeded order of the pool, so the first k demonstrations are the same for every `shots` >= k:
    fewer shots drop demonstrations from the end and never swap them. Raises ValueError if the pool is too small.
    """
    t = get_task(task)
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    if format not in t.formats:
        raise ValueError(f"task {task!r} has no format {format!r}; its formats are {list(t.formats)}")
    if shots == 0:
        return []
    if t.fewshot_file is None:
        pool = t.items(read_records(Path(root) / t.eval_file), format)
    else:
        pool = t.items(read_records(Path(root) / t.fewshot_file), format, split=FEWSHOT_SPLIT)
    pool = [item for item in pool if item.id not in exclude_ids]
    # The shuffle sees only the pool's size, so every format draws the same records. A record whose demo text
    # repeats one already drawn (e.g. an ARC train question listed twice) is skipped, not shown twice.
    order = list(range(len(pool)))
    random.Random(f"{task}/fewshot/{seed}").shuffle(order)
    demos: dict[str, Item] = {}
    for i in order:
        demos.setdefault(demo_text(pool[i]), pool[i])
        if len(demos) == shots:
            return list(demos.values())
    raise ValueError(f"task {task!r}: {shots} demonstrations requested but its few-shot pool has {len(demos)} "
                     f"distinct ones")


def fewshot_demos(task: str, format: str, root: Path, shots: int, seed: int, exclude_ids: set[str]) -> list[str]:
    """The `fewshot_items` as text, each ``context + " " + gold choice + "\\n\\n"`` (lm-eval's target and few-shot
    delimiters); [] for 0 shots."""
    return [demo_text(item) for item in fewshot_items(task, format, root, shots, seed, exclude_ids)]


def fewshot_prefix(task: str, format: str, root: Path, shots: int, seed: int, exclude_ids: set[str]) -> str:
    """The `fewshot_demos` joined: each demonstration ends in "\\n\\n" (lm-eval's fewshot delimiter), so the prefix
    is followed directly by the evaluated context; "" for 0 shots."""
    return "".join(fewshot_demos(task, format, root, shots, seed, exclude_ids))


def demo_text(item: Item) -> str:
    """One demonstration: the item's context, the target delimiter " ", its gold choice and the few-shot delimiter."""
    return f"{item.context} {item.choices[item.label]}\n\n"
