"""The `prepare` stage: deterministic splits of the shipped raw data into the corpora of the miniature world.

Inputs (under `raw`, see data/README.md):

- `text/broad_mixed_en.jsonl.gz`    broad-domain English documents (the stand-in for FineWeb-Edu)
- `text/gutenberg_books.jsonl.gz`   43 Project Gutenberg books (narrow domain: the "natural speech" side)
- `benchmarks/mmlu_pro_test.jsonl.gz` MMLU-Pro test, from which the MMSU-like set is rebuilt

Outputs (under `out`, written as one directory that appears whole or not at all):

| file | records | role |
|---|---|---|
| `test.jsonl`     | `{id, source, genre, text}` | held-out broad documents with speech: M and F are measured on them |
| `probe.jsonl`    | `{id, source, genre, text}` | Stage II probe documents (M per cluster) |
| `web.jsonl`      | `{id, source, genre, text}` | D_web: the broad pool (active selection, text-only corpus mixing, teacher pretraining) |
| `speech.jsonl`   | `{id, book, pg_id, text}`   | D_speech text: chunks of the speech books, to be synthesized |
| `pretrain.jsonl` | `{id, text}`                | teacher pretraining text: all of web + chunks of the other books |
| `mmsu.jsonl`     | `{id, category, question, options, label}` | the MMSU-like benchmark |
| `text_mix.jsonl` | `{id, text}`                | only with `prepare.text_mix_corpus`: the text-only batches of training (paper: SmolLM corpus) |
| `family/<task>.jsonl` | `{id, context, choices, label}` or `{id, question, options, label}` | the miniature task family (below) |
| `stats.json`     | counts, words, characters per split; estimated speech hours | |

The splits themselves (chunking, the recipe, the MMSU-like set) are salad.data.splits; this module reads the raw
files, checks them, and writes the splits and their statistics.

The miniature task family (the tasks the miniature teacher can do; salad.evaluation.tasks registers them) is built
here from text no model trains on: next-word choice on held-out broad chunks (the chunks of test and probe documents
that the splits leave out) and on the speech books' chunks outside D_speech, agreement pairs on both
(salad.data.family), and closed-book questions about a seeded fictional world whose statements are woven into the
pretraining text at `prepare.world_fraction` of its characters (salad.data.world).

At paper scale the broad documents are a fetched corpus (`prepare.web_corpus`: FineWeb-Edu parts written by
`salad fetch`) instead of the shipped file; they are held in memory, as the shipped file is.
`prepare.text_mix_corpus` adds `text_mix.jsonl`, the fetched text-mixing corpus chunked the same way.
"""

from __future__ import annotations

from pathlib import Path

from salad.config import Params
from salad.data.family import AGREEMENT_PAIRS, agreement_items, frequency_bands, next_word_items
from salad.data.splits import (WORDS_PER_MINUTE, PrepareError, build_mmsu, check_text_records, named_rng, split_books,
                               split_broad, split_stats, text_mix_chunks)
from salad.data.world import make_people, world_documents, world_items
from salad.storage.atomic import atomic_dir, read_jsonl, write_json, write_jsonl

__all__ = ["prepare"]

BROAD_FILE = Path("text") / "broad_mixed_en.jsonl.gz"
BOOKS_FILE = Path("text") / "gutenberg_books.jsonl.gz"
MMLU_PRO_FILE = Path("benchmarks") / "mmlu_pro_test.jsonl.gz"


def _read(path: Path) -> list[dict]:
    if not path.exists():
        raise PrepareError(f"{path}: raw input not found (see data/README.md for what data/raw must hold)")
    return read_jsonl(path)


def _read_corpus(folder: Path, kind: str) -> list[dict]:
    """The committed parts `salad fetch --corpus <kind>` wrote into `folder` (held in memory, like the shipped file)."""
    from salad.scale.corpora import read_parts

    records = list(read_parts(folder)) if folder.is_dir() else []
    if not records:
        raise PrepareError(f"{folder}: no committed parts of a fetched corpus (prepare.{kind}_corpus); run "
                           f"`salad fetch --corpus {kind}` with the profile's corpora.{kind} first")
    return records


def build_family(pretrain: list[dict], broad_rest: list[dict], book_rest: list[dict], cfg, seed: int
                 ) -> tuple[list[dict], dict[str, list[dict]], dict]:
    """The pretraining records with the world text woven in, the family's records per task, and their counts."""
    people = make_people(cfg.world_people, cfg.world_demonstrated, named_rng(seed, "world", "people"))
    chars = sum(len(r["text"]) for r in pretrain)
    world = world_documents(people, round(cfg.world_fraction / (1 - cfg.world_fraction) * chars),
                            named_rng(seed, "world", "documents")) if cfg.world_fraction > 0 else []
    world_chars = sum(len(r["text"]) for r in world)
    woven = pretrain + world
    woven = [woven[j] for j in named_rng(seed, "world", "weave").permutation(len(woven)).tolist()]
    band = frequency_bands([r["text"] for r in woven])  # the words as often as the teacher reads them
    family = {
        "next_word_broad": next_word_items(broad_rest, band, cfg.family_items, named_rng(seed, "family", "broad"),
                                           "broad"),
        "next_word_book": next_word_items(book_rest, band, cfg.family_items, named_rng(seed, "family", "book"), "book"),
        "agreement": agreement_items(broad_rest + book_rest, cfg.agreement_per_form, named_rng(seed, "family", "agree"),
                                     "agree"),
        "world_qa": world_items(people, named_rng(seed, "world", "items")),
    }
    for name, key, wanted in (("next_word_broad", "family_items", cfg.family_items),
                              ("next_word_book", "family_items", cfg.family_items),
                              ("agreement", "agreement_per_form", cfg.agreement_per_form * len(AGREEMENT_PAIRS))):
        if len(family[name]) < wanted:
            raise PrepareError(f"prepare: the held-out text gives only {len(family[name])} items of the family task "
                               f"{name!r}, {wanted} requested (prepare.{key})")
    info = {"items": {name: len(records) for name, records in family.items()},
            "held_out_chunks": {"broad": len(broad_rest), "book": len(book_rest)},
            "world": {"people": len(people), "demonstrated": cfg.world_demonstrated, "documents": len(world),
                      "chars": world_chars,
                      "fraction": world_chars / max(1, chars + world_chars)},
            "band_words": len(band)}
    return woven, family, info


def prepare(params: Params, raw: Path, out: Path) -> dict:
    """Write the deterministic splits of `raw` into `out` (data/prepared in dvc.yaml); return the statistics."""
    cfg, seed = params.prepare, params.seed
    raw, out = Path(raw), Path(out)

    broad_path = Path(cfg.web_corpus) if cfg.web_corpus else raw / BROAD_FILE
    broad = _read_corpus(broad_path, "web") if cfg.web_corpus else _read(broad_path)
    check_text_records(broad_path, broad, "id")
    books_path = raw / BOOKS_FILE
    books = _read(books_path)
    check_text_records(books_path, books, "pg_id")
    mmlu_path = raw / MMLU_PRO_FILE
    mmlu = _read(mmlu_path)

    splits, broad_info = split_broad(broad, cfg, seed)
    speech, pretrain, speech_rest, book_info = split_books(books, splits["web"], cfg, seed, books_path)
    pretrain, family, family_info = build_family(pretrain, splits.pop("heldout_rest"), speech_rest, cfg, seed)
    mmsu = build_mmsu(mmlu, cfg, seed, mmlu_path)
    text_mix = None
    if cfg.text_mix_corpus:
        mix_path = Path(cfg.text_mix_corpus)
        mix = _read_corpus(mix_path, "text_mix")
        check_text_records(mix_path, mix, "id")
        text_mix = text_mix_chunks(mix, cfg.doc_words)

    stats: dict = {name: split_stats(recs) for name, recs in
                   (("test", splits["test"]), ("probe", splits["probe"]), ("web", splits["web"]),
                    ("speech", speech), ("pretrain", pretrain))}
    for name in ("test", "probe", "web"):
        stats[name]["source_documents"] = len({r["id"].rsplit("#", 1)[0] for r in splits[name]})
    stats["books"] = book_info
    per_category: dict[str, int] = {}
    for r in mmsu:
        per_category[r["category"]] = per_category.get(r["category"], 0) + 1
    label_counts = [0] * cfg.mmsu_options
    for r in mmsu:
        label_counts[r["label"]] += 1
    stats["mmsu"] = {"records": len(mmsu), "per_category": per_category, "label_counts": label_counts,
                     "options": cfg.mmsu_options}
    stats["broad"] = broad_info
    stats["family"] = family_info
    if text_mix is not None:
        stats["text_mix"] = split_stats(text_mix)
    stats["seed"] = seed
    stats["doc_words"] = cfg.doc_words
    stats["words_per_minute"] = WORDS_PER_MINUTE

    with atomic_dir(out) as tmp:
        write_jsonl(tmp / "test.jsonl", splits["test"])
        write_jsonl(tmp / "probe.jsonl", splits["probe"])
        write_jsonl(tmp / "web.jsonl", splits["web"])
        write_jsonl(tmp / "speech.jsonl", speech)
        write_jsonl(tmp / "pretrain.jsonl", pretrain)
        write_jsonl(tmp / "mmsu.jsonl", mmsu)
        (tmp / "family").mkdir()
        for name, records in family.items():
            write_jsonl(tmp / "family" / f"{name}.jsonl", records)
        if text_mix is not None:
            write_jsonl(tmp / "text_mix.jsonl", text_mix)
        write_json(tmp / "stats.json", stats)
    return stats
