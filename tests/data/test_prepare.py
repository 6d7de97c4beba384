"""The prepare stage on the real shipped data (small sizes): determinism, disjoint splits, chunk bounds, the book
share of teacher pretraining, and the seeded MMSU rebuild."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
from pathlib import Path

import pytest

from salad.storage.atomic import read_jsonl
from salad.config import Params, PrepareConfig
from salad.data.splits import PrepareError, build_mmsu, chunk_words
from salad.stages.prepare import prepare

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "data" / "raw"
FILES = ("test.jsonl", "probe.jsonl", "web.jsonl", "speech.jsonl", "pretrain.jsonl", "mmsu.jsonl", "stats.json")
SMALL = PrepareConfig(test_docs=10, probe_docs=10, speech_books=3, speech_docs=20, mmsu_per_category=3,
                      family_items=12, agreement_per_form=2, world_people=30, world_demonstrated=10)
FAMILY_FILES = tuple(f"family/{name}.jsonl" for name in ("next_word_broad", "next_word_book", "agreement",
                                                          "world_qa"))


def source_doc(chunk_id: str) -> str:
    return chunk_id.rsplit("#", 1)[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    out = {}
    for name, seed in (("a", 0), ("b", 0), ("seed1", 1)):
        out[name] = root / name
        prepare(Params(seed=seed, prepare=SMALL), RAW, out[name])
    return out


@pytest.fixture(scope="module")
def a(runs):
    return {f.split(".")[0]: read_jsonl(runs["a"] / f) for f in FILES if f.endswith(".jsonl")}


def test_two_runs_are_byte_identical(runs):
    for f in FILES + FAMILY_FILES:
        assert (runs["a"] / f).read_bytes() == (runs["b"] / f).read_bytes(), f
    assert sorted(os.listdir(runs["a"])) == sorted(FILES + ("family",)), "no stray or temporary files"
    assert sorted(os.listdir(runs["a"] / "family")) == sorted(f.split("/")[1] for f in FAMILY_FILES)


def test_a_different_seed_changes_the_splits(runs):
    for f in ("test.jsonl", "probe.jsonl", "speech.jsonl", "mmsu.jsonl", "pretrain.jsonl"):
        ids0 = [r["id"] for r in read_jsonl(runs["a"] / f)]
        ids1 = [r["id"] for r in read_jsonl(runs["seed1"] / f)]
        assert ids0 != ids1, f


def test_sizes(a):
    assert len(a["test"]) == SMALL.test_docs
    assert len(a["probe"]) == SMALL.probe_docs
    assert len(a["speech"]) == SMALL.speech_docs
    assert len(a["web"]) > 20_000


def test_no_source_document_in_two_splits(a):
    docs = {name: {source_doc(r["id"]) for r in a[name]} for name in ("test", "probe", "web")}
    assert not docs["test"] & docs["probe"]
    assert not docs["test"] & docs["web"]
    assert not docs["probe"] & docs["web"]
    # held-out documents never reach teacher pretraining; speech books never either
    pre = {source_doc(r["id"]) for r in a["pretrain"]}
    assert not (docs["test"] | docs["probe"]) & pre
    speech_books = {source_doc(r["id"]) for r in a["speech"]}
    assert all(b.startswith("pg") for b in speech_books)
    assert not speech_books & pre
    # ids are unique within every file
    for name, recs in a.items():
        assert len({r["id"] for r in recs}) == len(recs), name


def test_records_have_the_documented_schema(a):
    for name in ("test", "probe", "web"):
        assert all(set(r) == {"id", "source", "genre", "text"} for r in a[name]), name
    assert all(set(r) == {"id", "book", "pg_id", "text"} for r in a["speech"])
    assert all(set(r) == {"id", "text"} for r in a["pretrain"])
    assert all(set(r) == {"id", "category", "question", "options", "label"} for r in a["mmsu"])


def test_chunks_are_normalised_and_within_bounds(a):
    lo, hi = math.ceil(SMALL.doc_words / 2), math.floor(SMALL.doc_words * 1.3)
    for name in ("test", "probe", "web", "speech", "pretrain"):
        for r in a[name]:
            if r["id"].startswith("world#"):
                continue  # the world's documents are not chunks (test_the_world_is_woven_into_pretraining)
            n = len(r["text"].split())
            assert lo <= n <= hi, (name, r["id"], n)
            assert r["text"] == " ".join(r["text"].split()), (name, r["id"])
    # most chunks are close to doc_words, and most end at a sentence end
    web = [len(r["text"].split()) for r in a["web"]]
    assert sum(abs(n - SMALL.doc_words) <= 30 for n in web) / len(web) > 0.8
    ends = sum(r["text"].rstrip("\"'”’)]").endswith((".", "!", "?")) for r in a["web"])
    assert ends / len(a["web"]) > 0.8


def test_pretrain_is_web_plus_the_book_fraction(a, runs):
    web_ids = {r["id"] for r in a["web"]}
    pre_ids = {r["id"] for r in a["pretrain"]}
    assert web_ids <= pre_ids
    book = [r for r in a["pretrain"] if r["id"] not in web_ids and not r["id"].startswith("world#")]
    assert book and all(r["id"].startswith("pg") for r in book)
    book_chars = sum(len(r["text"]) for r in book)
    total = sum(len(r["text"]) for r in a["pretrain"] if not r["id"].startswith("world#"))
    assert abs(book_chars / total - SMALL.teacher_book_fraction) < 0.01
    stats = json.loads((runs["a"] / "stats.json").read_text())
    assert stats["pretrain"]["records"] == len(a["pretrain"])
    assert stats["test"]["words"] == sum(len(r["text"].split()) for r in a["test"])
    assert stats["speech"]["speech_hours_est"] == round(stats["speech"]["words"] / 175 / 60, 3)


def family(runs, name: str) -> list[dict]:
    return read_jsonl(runs["a"] / "family" / f"{name}.jsonl")


def test_the_world_is_woven_into_pretraining(a, runs):
    world = [r for r in a["pretrain"] if r["id"].startswith("world#")]
    chars = sum(len(r["text"]) for r in world)
    assert abs(chars / sum(len(r["text"]) for r in a["pretrain"]) - SMALL.world_fraction) < 0.01
    assert world[0] != a["pretrain"][0] or world[-1] != a["pretrain"][-1]  # shuffled in, not appended
    text = "\n".join(r["text"] for r in world)
    evaluated = family(runs, "world_qa")
    assert len(evaluated) == 3 * (SMALL.world_people - SMALL.world_demonstrated)
    for item in evaluated:
        if not item["question"].startswith("Where does "):
            continue
        name = item["question"].removeprefix("Where does ").removesuffix(" work?")
        gold = item["options"][item["label"]]
        assert f"{name} " in text and gold in text
        assert f"Where does {name} work?" not in text  # evaluated people are never asked about in pretraining
        assert len(set(item["options"])) == 4
    assert "Question: Where does" in text  # the demonstrated people are
    labels = [r["label"] for r in evaluated]
    assert set(labels) == {0, 1, 2, 3}


def test_family_items_come_from_text_no_model_trains_on(a, runs):
    trained = {r["id"] for name in ("web", "speech", "pretrain", "test", "probe") for r in a[name]}
    source = {r["id"]: r["text"] for r in a["test"]}  # only for the id check below
    for name in ("next_word_broad", "next_word_book"):
        items = family(runs, name)
        assert len(items) == SMALL.family_items
        for item in items:
            doc = item["id"].split("-", 1)[1]
            assert doc not in trained and doc not in source
            assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
            assert 10 <= len(item["context"].split()) <= 30
    agreement = family(runs, "agreement")
    forms = [r["choices"][r["label"]] for r in agreement]
    assert sorted(forms) == sorted(["is", "are", "was", "were", "has", "have"] * SMALL.agreement_per_form)
    assert all({r["choices"][0], r["choices"][1]} in ({"is", "are"}, {"was", "were"}, {"has", "have"})
               for r in agreement)
    assert not {r["id"].split("-", 1)[1].rsplit("-", 1)[0] for r in agreement} & trained
    stats = json.loads((runs["a"] / "stats.json").read_text())["family"]
    assert stats["items"] == {"next_word_broad": 12, "next_word_book": 12, "agreement": 12, "world_qa": 60}


def test_too_few_held_out_documents_for_the_family_is_an_error(tmp_path):
    with pytest.raises(PrepareError, match="only .* items of the family task 'next_word_broad', 100000 requested "
                                           r"\(prepare.family_items\)"):
        prepare(Params(prepare=dataclasses.replace(SMALL, family_items=100_000)), RAW, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def mmlu():
    with gzip.open(RAW / "benchmarks" / "mmlu_pro_test.jsonl.gz", "rt", encoding="utf-8") as f:
        return {r["question_id"]: r for r in map(json.loads, f)}


def test_mmsu_items(a, mmlu):
    items = a["mmsu"]
    assert len({r["category"] for r in items}) == 12
    assert {r["category"] for r in items} == set(SMALL.mmsu_categories)
    assert len(items) == 12 * SMALL.mmsu_per_category
    for r in items:
        orig = mmlu[int(r["id"].split("/", 1)[1])]
        assert r["category"] == orig["category"] and r["question"] == orig["question"]
        assert len(r["options"]) == 4
        assert len({o.strip() for o in r["options"]}) == 4
        assert r["options"][r["label"]] == orig["options"][orig["answer_index"]]
        assert all(o in orig["options"] for o in r["options"])


def test_mmsu_labels_are_roughly_uniform(mmlu):
    items = build_mmsu(list(mmlu.values()), PrepareConfig(), 0, RAW / "benchmarks" / "mmlu_pro_test.jsonl.gz")
    assert len(items) == 720
    counts = [sum(r["label"] == k for r in items) for k in range(4)]
    # 720 items: binomial sd per position is about 11.6; 4.5 sd would be a broken shuffle
    assert all(abs(c - 180) < 52 for c in counts), counts
    # a larger per-category count extends a smaller one (prefix-stable draws)
    small = build_mmsu(list(mmlu.values()), SMALL, 0, RAW / "benchmarks" / "mmlu_pro_test.jsonl.gz")
    assert {r["id"] for r in small} <= {r["id"] for r in items}


def test_unknown_mmsu_category_is_named(mmlu):
    cfg = PrepareConfig(mmsu_categories=("biology", "astrology"))
    with pytest.raises(PrepareError, match="astrology"):
        build_mmsu(list(mmlu.values()), cfg, 0, Path("mmlu_pro_test.jsonl.gz"))


def test_chunker_prefers_sentence_ends_and_cuts_hard_without_them():
    words = (["w"] * 9 + ["end."]) * 10
    chunks = chunk_words(words, 24)  # sentence ends at 20 and 30 words: 20 is within 30 % of 24 and closest
    assert [len(c) for c in chunks] == [20] * 5
    assert all(c[-1] == "end." for c in chunks)
    # no sentence end: hard cuts at doc_words; a tail of at most 1.3*doc_words stays whole; tails < doc_words/2 go
    assert [len(c) for c in chunk_words(["w"] * 250, 100)] == [100, 100, 50]
    assert [len(c) for c in chunk_words(["w"] * 245, 100)] == [100, 100]
    assert [len(c) for c in chunk_words(["w"] * 180, 100)] == [100, 80]
    assert [len(c) for c in chunk_words(["w"] * 130, 100)] == [130]
    assert [len(c) for c in chunk_words(["w"] * 140, 100)] == [100]
    assert chunk_words(["w"] * 30, 100) == []
    # abbreviations and initials do not end sentences
    words = ["w"] * 19 + ["Mr."] + ["w"] * 9 + ["J."] + ["w"] * 40
    assert len(chunk_words(words, 24)[0]) == 24


def _raw_with_broken_broad(tmp_path: Path, mutate) -> Path:
    raw = tmp_path / "raw"
    (raw / "text").mkdir(parents=True)
    (raw / "benchmarks").mkdir()
    with gzip.open(RAW / "text" / "broad_mixed_en.jsonl.gz", "rt", encoding="utf-8") as f:
        recs = [json.loads(line) for _, line in zip(range(300), f)]
    mutate(recs)
    with gzip.open(raw / "text" / "broad_mixed_en.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
    (raw / "text" / "gutenberg_books.jsonl.gz").symlink_to(RAW / "text" / "gutenberg_books.jsonl.gz")
    (raw / "benchmarks" / "mmlu_pro_test.jsonl.gz").symlink_to(RAW / "benchmarks" / "mmlu_pro_test.jsonl.gz")
    return raw


@pytest.mark.parametrize("problem, match", [
    (lambda recs: recs[7].pop("text"), r"broad_mixed_en\.jsonl\.gz.*id='.+' has no 'text'"),
    (lambda recs: recs[7].update(text="  \n "), r"broad_mixed_en\.jsonl\.gz.*id='.+' has an empty 'text'"),
])
def test_bad_input_names_file_and_record_and_writes_nothing(tmp_path, problem, match):
    raw = _raw_with_broken_broad(tmp_path, problem)
    out = tmp_path / "prepared"
    with pytest.raises(PrepareError, match=match):
        prepare(Params(prepare=SMALL), raw, out)
    assert not out.exists()


def test_too_few_speech_chunks_is_an_error(tmp_path):
    raw = _raw_with_broken_broad(tmp_path, lambda recs: None)
    cfg = PrepareConfig(test_docs=5, probe_docs=5, speech_books=1, speech_docs=10**6, mmsu_per_category=1)
    with pytest.raises(PrepareError, match="speech_docs"):
        prepare(Params(prepare=cfg), raw, tmp_path / "prepared")
