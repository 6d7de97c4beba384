"""A seeded fictional world: people, facts about them, the text that states the facts, and questions that ask them.

Why: the miniature teacher (5 M parameters, about 1 M training tokens) can learn facts it reads often enough, but none
of the real knowledge benchmarks is within its reach (they sit at chance). A closed-book question about a fact the
teacher read in pretraining is the miniature analogue of MMSU: the student hears the question and must answer from
knowledge stored in the LM, which is exactly what cross-modal alignment has to carry.

Recipe (all draws from `seed`):
- `people` people, each a unique invented two-part name built from syllables (so no fact can be known from any
  other text), with one value per attribute of `ATTRIBUTES` drawn uniformly from its value list;
- the first `qa_people` people are *demonstrated*: pretraining states their facts and also shows them as
  question-answer pairs in the evaluation's own format; the others are *stated only*: pretraining states their facts
  in prose and never asks about them. Only stated-only people are evaluated, so an answer needs the step from a
  statement to a question, as in a real closed-book benchmark;
- world documents: each a short paragraph of statements about a few people (each fact in one of several phrasings),
  or a block of question-answer pairs about demonstrated people, until the world text reaches its share of the
  pretraining characters (prepare.world_fraction); people are taken round by round from seeded permutations, so
  every person is stated about equally often;
- evaluation items (one task, `world_qa`): for each stated-only person and attribute, "Question: <question>\\nAnswer:"
  with the true value and three distinct values of the same attribute held by other people (so every choice is a
  value the teacher has read, in about as many contexts), the true one at a uniformly drawn position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salad.data.family import round_robin

__all__ = ["ATTRIBUTES", "Person", "make_people", "world_documents", "world_items", "QUESTION_FORMAT"]

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "j", "k", "kl", "l", "m", "n", "p", "pr", "r", "s", "st", "t",
           "tr", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "nd", "x"]


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: its question, its statement phrasings ({name} and {value} filled in) and its values."""

    name: str
    question: str
    statements: tuple[str, ...]
    values: tuple[str, ...]


ATTRIBUTES: dict[str, Attribute] = {a.name: a for a in (
    Attribute("work", "Where does {name} work?",
              ("{name} works at {value}.", "Every morning {name} walks to work at {value}.",
               "{name} has worked at {value} for many years.", "Ask anyone: {name} works at {value}."),
              ("the bakery", "the library", "the harbor", "the museum", "the hospital", "the school", "the farm",
               "the bank", "the theater", "the post office", "the factory", "the market", "the mill",
               "the lighthouse", "the observatory", "the prison")),
    Attribute("object", "What does {name} always carry?",
              ("{name} always carries {value}.", "Wherever {name} goes, {name} takes {value}.",
               "Nobody has ever seen {name} without {value}.", "{name} never leaves home without {value}."),
              ("an umbrella", "a lantern", "a violin", "a compass", "a notebook", "a hammer", "a kite", "a basket",
               "a telescope", "a drum", "a map", "a candle", "a whistle", "a shovel", "a mirror", "a rope")),
    Attribute("city", "Where was {name} born?",
              ("{name} was born in {value}.", "{name} grew up in {value}.", "{name} comes from {value}.",
               "Before moving away, {name} lived in {value}."),
              ("Paris", "Cairo", "Lima", "Oslo", "Dublin", "Madrid", "Tokyo", "Boston", "Vienna", "Chicago",
               "Berlin", "Moscow", "Sydney", "Athens", "Toronto", "Rome")),
)}
"""The attributes every person has, each asked about in the `world_qa` task (salad.evaluation.tasks)."""

QUESTION_FORMAT = "Question: {question}\nAnswer:"
"""The evaluation's prompt (the qa layout's continuation format); demonstrated pairs use it with the answer after " "."""


@dataclass(frozen=True)
class Person:
    name: str
    facts: dict[str, str]
    demonstrated: bool
    """Pretraining shows this person's facts as question-answer pairs too; only the others are evaluated."""


def _name_part(rng: np.random.Generator) -> str:
    syllables = int(rng.integers(1, 3))
    word = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
                   for _ in range(syllables)) + _CODAS[rng.integers(len(_CODAS))]
    return word.capitalize()


def make_people(n: int, demonstrated: int, rng: np.random.Generator) -> list[Person]:
    """`n` people with unique names; the first `demonstrated` are shown as question-answer pairs in pretraining."""
    if not 0 <= demonstrated < n:
        raise ValueError(f"need 0 <= demonstrated people < people, got {demonstrated} of {n}")
    names: list[str] = []
    seen: set[str] = set()
    first_names: set[str] = set()
    while len(names) < n:
        first, last = _name_part(rng), _name_part(rng)
        if first == last or f"{first} {last}" in seen or first in first_names:  # a first name names one person
            continue
        seen.add(f"{first} {last}")
        first_names.add(first)
        names.append(f"{first} {last}")
    return [Person(name, {a.name: a.values[rng.integers(len(a.values))] for a in ATTRIBUTES.values()}, i < demonstrated)
            for i, name in enumerate(names)]


def _statement(person: Person, attribute: Attribute, rng: np.random.Generator) -> str:
    template = attribute.statements[rng.integers(len(attribute.statements))]
    return template.format(name=person.name, value=person.facts[attribute.name])


def qa_pair(person: Person, attribute: Attribute) -> str:
    """A demonstrated fact as the evaluation asks it, with its answer."""
    question = QUESTION_FORMAT.format(question=attribute.question.format(name=person.name))
    return f"{question} {person.facts[attribute.name]}"


def _queue(n: int, rng: np.random.Generator):
    """Indices 0..n-1 in one seeded permutation after another: every index comes once per round."""
    while True:
        yield from rng.permutation(n).tolist()


def world_documents(people: list[Person], target_chars: int, rng: np.random.Generator,
                    people_per_doc: int = 3) -> list[dict]:
    """World documents {id, text} until their characters reach `target_chars`: prose paragraphs stating every fact of
    `people_per_doc` people (in drawn phrasings and order), and, one document in four, blocks of four
    question-answer pairs about demonstrated people. People (and demonstrated facts) are taken round by round from
    seeded permutations, so every person is stated about equally often and none is left out."""
    demonstrated = [p for p in people if p.demonstrated]
    attributes = list(ATTRIBUTES.values())
    stated, asked = _queue(len(people), rng), _queue(len(demonstrated) * len(attributes), rng)
    docs, chars = [], 0
    while chars < target_chars:
        if demonstrated and rng.random() < 0.25:
            pairs = [divmod(next(asked), len(attributes)) for _ in range(4)]
            text = "\n\n".join(qa_pair(demonstrated[i], attributes[a]) for i, a in pairs)
        else:
            chosen = [people[next(stated)] for _ in range(people_per_doc)]
            sentences = [_statement(p, a, rng) for p in chosen for a in attributes]
            text = " ".join(sentences[j] for j in rng.permutation(len(sentences)))
        docs.append({"id": f"world#{len(docs)}", "text": text})
        chars += len(text)
    return docs


def world_items(people: list[Person], rng: np.random.Generator) -> list[dict]:
    """The evaluation records {id, question, options, label}: every attribute of every stated-only person, the
    attributes interleaved (any prefix asks about all of them alike)."""
    return round_robin([_attribute_items(people, attribute, rng) for attribute in ATTRIBUTES])


def _attribute_items(people: list[Person], attribute: str, rng: np.random.Generator) -> list[dict]:
    a = ATTRIBUTES[attribute]
    records = []
    for k, person in enumerate(people):
        if person.demonstrated:
            continue
        gold = person.facts[attribute]
        others = sorted({p.facts[attribute] for p in people if p.facts[attribute] != gold})
        options = [gold, *(others[i] for i in rng.choice(len(others), size=3, replace=False))]
        order = rng.permutation(4)
        options = [options[i] for i in order]
        records.append({"id": f"{attribute}-{k}", "question": a.question.format(name=person.name),
                        "options": options, "label": int(np.flatnonzero(order == 0)[0])})
    return records
