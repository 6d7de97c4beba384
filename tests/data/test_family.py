"""The miniature family's item recipes (salad.data.family, salad.data.world) on toy inputs: exact bands, the gold
word in place, distractors from the gold's band, balanced agreement forms, and the world's facts and questions."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from salad.data.family import AGREEMENT_PAIRS, agreement_items, frequency_bands, next_word_items
from salad.data.world import ATTRIBUTES, QUESTION_FORMAT, make_people, qa_pair, world_documents, world_items


def test_frequency_bands_rank_lower_case_words_seen_three_times():
    texts = ["the the the the cat cat cat dog dog dog Bird Bird Bird bird", "a a a b b b c c c d d d e e e"]
    band = frequency_bands(texts)
    # ranks: the (4) first, then the 3-count words alphabetically: a b c cat d dog e; "bird" is seen once in lower case
    ranked = ["the", "a", "b", "c", "cat", "d", "dog", "e"]
    assert band == {w: int(math.log2(1 + r)) for r, w in enumerate(ranked)}


def test_next_word_items_put_the_true_next_word_among_same_band_distractors():
    vocab = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(26)]  # letters only
    vocab = ["".join(ch for ch in w if ch.isalpha()) for w in vocab]
    rng = np.random.default_rng(0)
    docs = [{"id": f"d{k}", "text": " ".join(rng.choice(vocab, 40))} for k in range(30)]
    band = frequency_bands([d["text"] for d in docs] * 3)
    items = next_word_items(docs, band, 20, np.random.default_rng(1), "broad")
    assert len(items) == 20 and len({i["id"] for i in items}) == 20
    by_id = {d["id"]: d["text"].split() for d in docs}
    labels = Counter()
    for item in items:
        words = by_id[item["id"].removeprefix("broad-")]
        k = len(item["context"].split())
        assert 10 <= k <= 30 and words[:k] == item["context"].split()
        gold = item["choices"][item["label"]]
        assert gold == words[k] and len(set(item["choices"])) == 4
        assert {band[c] for c in item["choices"]} == {band[gold]}
        labels[item["label"]] += 1
    assert set(labels) == {0, 1, 2, 3}
    again = next_word_items(docs, band, 20, np.random.default_rng(1), "broad")
    assert again == items


def test_agreement_items_are_balanced_over_forms():
    texts = ["some words go here and the dog is happy while the cats are not and it was late",
             "they were there as she has to go and we have time but he is gone and you are here",
             "the plan was good and the plans were bad so it has a name and they have many more words here"]
    docs = [{"id": f"d{k}", "text": texts[k % 3]} for k in range(60)]
    items = agreement_items(docs, 3, np.random.default_rng(0), "agree")
    forms = [i["choices"][i["label"]] for i in items]
    assert Counter(forms) == {form: 3 for form in AGREEMENT_PAIRS}
    assert forms[:6] == list(AGREEMENT_PAIRS)  # interleaved: the first 100 items of the grid are balanced too
    for item in items:
        gold = item["choices"][item["label"]]
        assert sorted(item["choices"]) == sorted([gold, AGREEMENT_PAIRS[gold]])
        assert not item["context"].endswith(gold)


def test_the_world_states_every_fact_and_asks_only_demonstrated_people():
    people = make_people(40, 10, np.random.default_rng(0))
    assert len({p.name for p in people}) == 40 and len({p.name.split()[0] for p in people}) == 40
    assert [p.demonstrated for p in people] == [True] * 10 + [False] * 30
    docs = world_documents(people, 20_000, np.random.default_rng(1))
    text = "\n".join(d["text"] for d in docs)
    assert sum(len(d["text"]) for d in docs) >= 20_000
    for p in people:
        for attribute in ATTRIBUTES:
            assert f"{p.name}" in text
            asked = QUESTION_FORMAT.format(question=ATTRIBUTES[attribute].question.format(name=p.name))
            if not p.demonstrated:
                assert asked not in text
    assert any(qa_pair(p, ATTRIBUTES[a]) in text for p in people[:10] for a in ATTRIBUTES)
    items = world_items(people, np.random.default_rng(2))
    # one person's three questions after another's, so any prefix asks about every attribute alike
    assert len(items) == 3 * 30 and [i["id"] for i in items[:4]] == ["work-10", "object-10", "city-10", "work-11"]
    for item, person in zip(items[2::3], people[10:]):
        assert item["question"] == f"Where was {person.name} born?"
        assert item["options"][item["label"]] == person.facts["city"] and len(set(item["options"])) == 4
        assert set(item["options"]) <= set(ATTRIBUTES["city"].values)


def test_a_world_without_evaluated_people_is_an_error():
    with pytest.raises(ValueError, match="demonstrated people < people"):
        make_people(5, 5, np.random.default_rng(0))
