"""The corpus splits of the miniature world: chunking, broad test/probe/web splits, the speech and pretraining
books, and the MMSU-like benchmark, all deterministic given the seed (the `prepare` stage, salad.stages.prepare,
reads the raw files and writes the splits).

Recipe (every random choice comes from its own stream of a generator seeded with `params.seed`, so changing one
knob does not reshuffle unrelated choices):

1. Chunking. Whitespace is normalised to single spaces. A document is cut into chunks of about `doc_words` words:
   a chunk ends at the sentence end (a word ending in . ! or ?, optionally followed by closing quotes or brackets,
   that is not a common abbreviation or a single initial) whose length is closest to `doc_words` within
   ±30 % of it; if there is none, it is cut hard at `doc_words` words. When what is left of the document is at most
   1.3·doc_words words it becomes the last chunk whole. Chunks shorter than doc_words/2 words are dropped, so every
   chunk has between doc_words/2 and 1.3·doc_words words. A chunk's id is `"<document id>#<chunk index>"`.
   Book text additionally loses its transcriber credit paragraph ("Produced by …", "Transcribed from …") and the
   `_underscores_` Project Gutenberg uses for italics.
2. Broad splits are made over WHOLE source documents, so that no source document straddles two splits: documents
   are shuffled; `test` takes documents in that order until it holds `test_docs` chunks, then `probe` until it holds
   `probe_docs` chunks; every chunk of every remaining document goes to `web`. A held-out document contributes ONE
   chunk (chosen with the seed) and its other chunks are discarded: the broad corpus mixes 2,000-word Brown samples
   and 10,000-word speeches with 100-word passages, and one chunk per document keeps the test and probe sets as
   broad as the corpus instead of a handful of long documents (a choice of ours; the discarded text is under 3 % of
   the corpus's words at the default sizes, reported in `stats.json`). Documents shorter than doc_words/2 words give
   no chunk at all (576 of 5,005 at doc_words=100, nearly all short BoolQ passages).
3. Books: `speech_books` books are chosen with the seed for the speech side; `speech_docs` of their chunks are
   sampled without replacement (an error if there are fewer). The other books give the book part of teacher
   pretraining: their chunks, in seeded order, are added while the book share of pretraining characters stays
   closest to `teacher_book_fraction` (if the books run out the share is lower, and `stats.json` says so).
   Pretraining records (web chunks and book chunks) are written in one seeded shuffle.
4. MMSU. VoiceBench's MMSU has 3,074 questions from 12 MMLU-Pro categories with 4 options (its evaluator only
   extracts A-D); which items and which 3 distractors it kept is not published with the code, so we rebuild an
   MMSU-like set: for each category in `mmsu_categories` (an unknown name is an error), an item is eligible if it
   has at least `mmsu_options` distinct non-empty options (compared after stripping whitespace, the gold option
   distinct from the rest) and no option refers to other options ("all of the above", "none of the above",
   "Option B", a bare letter), since those stop making sense once options are dropped and reordered. From a seeded
   permutation of the eligible items the first `mmsu_per_category` are kept (fewer if there are fewer), so a larger
   count extends a smaller one. Each item keeps its gold option plus `mmsu_options - 1` distractors drawn with a
   seed derived from the item's id, in a seeded order; `label` is the gold option's position. Option texts are the
   original strings. Record id: `"mmsu/<question_id>"`.

At paper scale the broad documents are a fetched corpus (`prepare.web_corpus`), split by the same recipe; the
text-mixing corpus (`prepare.text_mix_corpus`) is chunked the same way (`text_mix_chunks`).

Speech hours in the statistics (`split_stats`) are an estimate at 175 words per minute (the default espeak-ng rate).
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path

import numpy as np

from salad.config import PrepareConfig

__all__ = ["PrepareError", "named_rng", "chunk_words", "chunk_text", "text_mix_chunks", "clean_book_text", "is_sentence_end",
           "check_text_records", "split_broad", "split_books", "build_mmsu", "split_stats", "WORDS_PER_MINUTE"]

CHUNK_TOLERANCE = 0.3
"""A chunk ends at a sentence end within ±30 % of doc_words; the last chunk may run to 1.3·doc_words."""
HELDOUT_CHUNKS_PER_DOC = 1
"""Chunks kept from each test/probe document (the rest of that document is discarded, never used elsewhere)."""
WORDS_PER_MINUTE = 175

_ABBREVIATIONS = frozenset(
    "mr. mrs. ms. dr. st. jr. sr. prof. gen. col. capt. lt. sgt. rev. hon. gov. sen. rep. messrs. mme. mlle. "
    "no. vs. e.g. i.e. u.s. u.k. fig. vol. pp. ch. ft. mt. co. inc. ltd. jan. feb. mar. apr. aug. sept. oct. "
    "nov. dec.".split()
)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")
_END_CHARS = frozenset(".!?\"'”’)]")
_INITIAL = re.compile(r"^[\"'“‘(]*[A-Z]\.$")
_CREDIT = re.compile(r"^\s*(produced by|transcribed from)\b", re.IGNORECASE)
_OPTION_REFERENCE = re.compile(
    r"\b(all|none|both|neither) of the (above|options|choices|answers|following)\b"
    r"|^\s*(options?|choices?)\s+\(?[A-J]\)?\b"
    r"|^\s*\(?[A-J]\)?\.?\s*$",
    re.IGNORECASE,
)


class PrepareError(ValueError):
    """Bad raw input or impossible split sizes; the message names the file and the record."""


# --------------------------------------------------------------------------------------------------------------
# seeded streams


def named_rng(seed: int, *stream: str | int) -> np.random.Generator:
    """A generator for one named purpose: the same (seed, stream) always gives the same draws."""
    words = [int(seed) & 0xFFFFFFFF]
    for part in stream:
        words.append(zlib.crc32(str(part).encode("utf-8")))
    return np.random.default_rng(np.random.SeedSequence(words))


# --------------------------------------------------------------------------------------------------------------
# chunking


def is_sentence_end(word: str) -> bool:
    if word[-1:] not in _END_CHARS or not _SENTENCE_END.search(word):
        return False
    bare = word.lower().lstrip("\"'“‘(")
    if bare in _ABBREVIATIONS:
        return False
    return not _INITIAL.match(word)


def chunk_words(words: list[str], doc_words: int) -> list[list[str]]:
    """Cut a word list into chunks of about doc_words words (see the module docstring); short chunks are dropped."""
    lo = max(1, math.ceil(doc_words * (1 - CHUNK_TOLERANCE)))
    hi = max(doc_words, math.floor(doc_words * (1 + CHUNK_TOLERANCE)))
    min_words = math.ceil(doc_words / 2)
    ends = [w[-1] in _END_CHARS and is_sentence_end(w) for w in words]  # cheap test first: 6 M words per run
    chunks = []
    start, n = 0, len(words)
    while start < n:
        if n - start <= hi:
            end = n
        else:
            best = None
            for length in range(lo, hi + 1):
                if ends[start + length - 1] and (best is None or abs(length - doc_words) < abs(best - doc_words)):
                    best = length
            end = start + (best if best is not None else doc_words)
        if end - start >= min_words:
            chunks.append(words[start:end])
        start = end
    return chunks


def chunk_text(text: str, doc_words: int) -> list[str]:
    return [" ".join(c) for c in chunk_words(text.split(), doc_words)]


def text_mix_chunks(docs: list[dict], doc_words: int) -> list[dict]:
    """The text-mixing corpus's documents as chunks {id: "<document id>#<chunk index>", text}, in document order."""
    return [{"id": f"{doc['id']}#{k}", "text": c} for doc in docs for k, c in
            enumerate(chunk_text(doc["text"], doc_words))]


def clean_book_text(text: str) -> str:
    """Drop the transcriber credit paragraph at the top and Gutenberg's `_italic_` underscores."""
    head, sep, rest = text.lstrip().partition("\n\n")
    if _CREDIT.match(head):
        text = rest
    return text.replace("_", " ")


# --------------------------------------------------------------------------------------------------------------
# validating raw records


def check_text_records(path: Path, records: list[dict], id_key: str) -> None:
    """Every record of `path` has a unique non-empty `id_key` and a non-empty string 'text'; else a PrepareError."""
    seen = set()
    for lineno, rec in enumerate(records, 1):
        if not isinstance(rec, dict) or rec.get(id_key) in (None, ""):
            raise PrepareError(f"{path}: record {lineno} has no {id_key!r}")
        rid = rec[id_key]
        if rid in seen:
            raise PrepareError(f"{path}: record {id_key}={rid!r} appears twice")
        seen.add(rid)
        if "text" not in rec:
            raise PrepareError(f"{path}: record {id_key}={rid!r} has no 'text' field")
        if not isinstance(rec["text"], str) or not rec["text"].strip():
            raise PrepareError(f"{path}: record {id_key}={rid!r} has an empty 'text'")


def _words(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------------------------------------------
# the three parts


def split_broad(docs: list[dict], cfg: PrepareConfig, seed: int) -> tuple[dict[str, list[dict]], dict]:
    """test / probe / web over whole source documents (module docstring, step 2), and what was left out."""
    order = named_rng(seed, "broad", "order").permutation(len(docs))
    pick = named_rng(seed, "broad", "heldout-chunk")
    splits: dict[str, list[dict]] = {"test": [], "probe": [], "web": [], "heldout_rest": []}
    quota = [("test", cfg.test_docs), ("probe", cfg.probe_docs)]
    info = {"documents": len(docs), "documents_without_chunks": 0, "heldout_discarded_chunks": 0,
            "heldout_discarded_words": 0}
    for i in order:
        doc = docs[i]
        chunks = chunk_text(doc["text"], cfg.doc_words)
        if not chunks:
            info["documents_without_chunks"] += 1
            continue
        records = [{"id": f"{doc['id']}#{k}", "source": doc.get("source"), "genre": doc.get("genre"), "text": c}
                   for k, c in enumerate(chunks)]
        while quota and len(splits[quota[0][0]]) >= quota[0][1]:
            quota.pop(0)
        if quota:
            name, size = quota[0]
            keep = min(HELDOUT_CHUNKS_PER_DOC, len(records), size - len(splits[name]))
            chosen = sorted(pick.choice(len(records), size=keep, replace=False).tolist())
            splits[name].extend(records[k] for k in chosen)
            dropped = [r for k, r in enumerate(records) if k not in chosen]
            splits["heldout_rest"].extend(dropped)  # never trained on: the miniature family's broad text
            info["heldout_discarded_chunks"] += len(dropped)
            info["heldout_discarded_words"] += sum(_words(r["text"]) for r in dropped)
        else:
            splits["web"].extend(records)
    for name, size in (("test", cfg.test_docs), ("probe", cfg.probe_docs)):
        if len(splits[name]) < size:
            raise PrepareError(f"prepare: the broad corpus gives only {len(splits[name])} {name} chunks of "
                               f"{size} requested (prepare.{name}_docs)")
    if not splits["web"]:
        raise PrepareError("prepare: no broad documents left for web.jsonl after the test and probe splits")
    return splits, info


def split_books(books: list[dict], web: list[dict], cfg: PrepareConfig, seed: int, path: Path
                ) -> tuple[list[dict], list[dict], list[dict], dict]:
    """speech.jsonl records, pretraining records, the speech books' chunks outside D_speech (never trained on: the
    miniature family's book text), and book statistics (module docstring, step 3)."""
    if cfg.speech_books > len(books):
        raise PrepareError(f"{path}: prepare.speech_books={cfg.speech_books} but the file holds {len(books)} books")
    chosen = set(named_rng(seed, "books", "speech").choice(len(books), size=cfg.speech_books, replace=False).tolist())

    def book_chunks(indices) -> list[dict]:
        return [{"id": f"pg{books[i]['pg_id']}#{k}", "book": books[i].get("title"), "pg_id": books[i]["pg_id"],
                 "text": c}
                for i in indices for k, c in enumerate(chunk_text(clean_book_text(books[i]["text"]), cfg.doc_words))]

    speech_pool = book_chunks(i for i in range(len(books)) if i in chosen)
    if len(speech_pool) < cfg.speech_docs:
        raise PrepareError(f"{path}: the {cfg.speech_books} speech books give {len(speech_pool)} chunks of "
                           f"{cfg.doc_words} words, fewer than prepare.speech_docs={cfg.speech_docs}")
    take = named_rng(seed, "books", "speech-chunks").choice(len(speech_pool), size=cfg.speech_docs, replace=False)
    speech = [speech_pool[j] for j in take.tolist()]
    taken = set(take.tolist())
    speech_rest = [c for j, c in enumerate(speech_pool) if j not in taken]
    other_pool = book_chunks(i for i in range(len(books)) if i not in chosen)

    web_chars = sum(len(r["text"]) for r in web)
    f = cfg.teacher_book_fraction
    target = f / (1.0 - f) * web_chars  # book characters that make them a share f of the total
    book_part, book_chars = [], 0
    for j in named_rng(seed, "books", "pretrain-chunks").permutation(len(other_pool)).tolist():
        n = len(other_pool[j]["text"])
        if abs(book_chars + n - target) >= abs(book_chars - target):
            break
        book_part.append({"id": other_pool[j]["id"], "text": other_pool[j]["text"]})
        book_chars += n
    pretrain = [{"id": r["id"], "text": r["text"]} for r in web] + book_part
    order = named_rng(seed, "pretrain", "order").permutation(len(pretrain)).tolist()
    pretrain = [pretrain[j] for j in order]
    info = {
        "speech_books": [{"pg_id": books[i]["pg_id"], "title": books[i].get("title")} for i in sorted(chosen)],
        "speech_pool_chunks": len(speech_pool),
        "pretrain_book_pool_chunks": len(other_pool),
        "pretrain_book_chunks": len(book_part),
        "pretrain_book_chars": book_chars,
        "pretrain_web_chars": web_chars,
        "pretrain_book_fraction": book_chars / max(1, book_chars + web_chars),
        "pretrain_book_fraction_target": f,
    }
    return speech, pretrain, speech_rest, info


def build_mmsu(items: list[dict], cfg: PrepareConfig, seed: int, path: Path) -> list[dict]:
    """The MMSU-like set (module docstring, step 4)."""
    by_category: dict[str, list[dict]] = {}
    for lineno, it in enumerate(items, 1):
        for key in ("question_id", "question", "options", "answer_index", "category"):
            if key not in it:
                rid = it.get("question_id", f"line {lineno}")
                raise PrepareError(f"{path}: record question_id={rid!r} has no {key!r} field")
        if not isinstance(it["options"], list) or not 0 <= it["answer_index"] < len(it["options"]):
            raise PrepareError(f"{path}: record question_id={it['question_id']!r}: answer_index "
                               f"{it['answer_index']} is not an index into its {len(it['options'])} options")
        by_category.setdefault(it["category"], []).append(it)
    unknown = [c for c in cfg.mmsu_categories if c not in by_category]
    if unknown:
        raise PrepareError(f"prepare.mmsu_categories: unknown MMLU-Pro categor{'y' if len(unknown) == 1 else 'ies'} "
                           f"{unknown}; {path} has {sorted(by_category)}")
    k = cfg.mmsu_options
    out = []
    for category in cfg.mmsu_categories:
        eligible = []
        for it in sorted(by_category[category], key=lambda x: x["question_id"]):
            options = it["options"]
            gold = options[it["answer_index"]]
            if not isinstance(gold, str) or not gold.strip():
                continue
            if any(isinstance(o, str) and _OPTION_REFERENCE.search(o) for o in options):
                continue
            distractors, seen = [], {gold.strip()}
            for o in options:
                if isinstance(o, str) and o.strip() and o.strip() not in seen:
                    seen.add(o.strip())
                    distractors.append(o)
            if len(distractors) >= k - 1:
                eligible.append((it, gold, distractors))
        order = named_rng(seed, "mmsu", "items", category).permutation(len(eligible)).tolist()
        for j in order[:cfg.mmsu_per_category]:
            it, gold, distractors = eligible[j]
            rng = named_rng(seed, "mmsu", "options", it["question_id"])
            picked = [distractors[d] for d in sorted(rng.choice(len(distractors), size=k - 1, replace=False).tolist())]
            options = [gold] + picked
            perm = rng.permutation(k).tolist()
            out.append({
                "id": f"mmsu/{it['question_id']}",
                "category": category,
                "question": it["question"],
                "options": [options[p] for p in perm],
                "label": perm.index(0),
            })
    return out


def split_stats(records: list[dict]) -> dict:
    """Records, words, characters and estimated speech hours (at WORDS_PER_MINUTE) of one split."""
    words = sum(_words(r["text"]) for r in records)
    return {
        "records": len(records),
        "words": words,
        "chars": sum(len(r["text"]) for r in records),
        "speech_hours_est": round(words / WORDS_PER_MINUTE / 60.0, 3),
    }
