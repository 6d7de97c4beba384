"""Paper-scale corpora through `datasets`: streamed, split over ranks, written locally in resumable parts.

The paper trains on corpora far larger than a disk's worth of ad-hoc downloads: D_web is a 10B-token FineWeb-Edu
subset, the text mixed into training is the SmolLM corpus, the natural speech is LibriHeavy and Emilia-YODAS (English).
They are read here as streams (`datasets.load_dataset(..., streaming=True)`), each rank of a job array or of torchrun
taking its own share (`split_dataset_by_node`), and written into local parts that the rest of the pipeline reads
like the miniature world's files:

- text corpora -> `part-<rank>-<k>.jsonl.gz` of {id, text} (the shape of data/prepared/web.jsonl);
- Emilia-style webdataset shards (an audio file and a JSON per utterance) -> the audio files plus a flat manifest per
  part ({id, audio, text, duration_s, speaker}), which `salad.speech.natural` ingests and word-aligns like the LJ sample;
- LibriHeavy ships lhotse cut manifests with word alignments for LibriLight audio: those are read by `salad.speech.natural`
  directly (its lhotse schema), so nothing is fetched here.

Resumption: part k of rank r holds documents [k·N, (k+1)·N) of that rank's stream and is committed by a marker file
written after its data; a rerun skips the documents of committed parts (`IterableDataset.skip`) and goes on.
The same code reads local files (`builder: json|parquet|webdataset` with `data_files`), which is how it is tested
offline on small files of the real schemas. Nothing is downloaded unless the environment allows the hub; offline, a
hub name fails with `datasets`' own "couldn't reach the Hub" error, raised here with the dataset named.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from salad.storage.atomic import atomic_path, read_json, write_json, write_jsonl

__all__ = ["CorpusSource", "KNOWN_SOURCES", "source_of", "fetch", "stream_documents", "fetch_text",
           "fetch_webdataset_speech", "read_parts"]


@dataclass(frozen=True)
class CorpusSource:
    """A dataset on the hub (`name`, `subset`, `split`) or local files (`name` = a builder, `data_files`)."""

    name: str
    """Hub dataset id (e.g. HuggingFaceFW/fineweb-edu) or a builder for local files: json, parquet, webdataset."""
    subset: str | None = None
    """Hub configuration (e.g. sample-10BT)."""
    split: str = "train"
    data_files: tuple[str, ...] = ()
    """Files or globs: local paths, or paths inside the hub dataset (e.g. Emilia-YODAS/EN/*.tar)."""
    text_field: str = "text"
    id_field: str | None = "id"
    """Field holding a stable document id; None: ids are <name>:<rank>:<index in the rank's stream>."""

    def __post_init__(self):
        object.__setattr__(self, "data_files", tuple(self.data_files))
        if self.name in ("json", "parquet", "webdataset") and not self.data_files:
            raise ValueError(f"corpus builder {self.name!r} needs data_files")


KNOWN_SOURCES: dict[str, CorpusSource] = {
    # D_web of the paper: FineWeb-Edu's 10B-token sample
    "fineweb-edu-10bt": CorpusSource("HuggingFaceFW/fineweb-edu", subset="sample-10BT"),
    # the text-only corpus mixed into training (SmolLM corpus: Cosmopedia v2 and FineWeb-Edu dedup)
    "smollm-cosmopedia-v2": CorpusSource("HuggingFaceTB/smollm-corpus", subset="cosmopedia-v2", id_field=None),
    "smollm-fineweb-edu-dedup": CorpusSource("HuggingFaceTB/smollm-corpus", subset="fineweb-edu-dedup"),
    # natural speech: Emilia's YODAS part, English (webdataset tars of mp3 + json)
    "emilia-yodas-en": CorpusSource("amphion/Emilia-Dataset", data_files=("Emilia-YODAS/EN/*.tar",), id_field=None),
}


def source_of(spec: str | dict) -> CorpusSource:
    """A corpus named in params: a key of KNOWN_SOURCES, or a mapping of CorpusSource fields."""
    if isinstance(spec, str):
        if spec not in KNOWN_SOURCES:
            raise KeyError(f"unknown corpus {spec!r}; known: {sorted(KNOWN_SOURCES)} (or give CorpusSource fields)")
        return KNOWN_SOURCES[spec]
    if not isinstance(spec, dict):
        raise TypeError(f"a corpus is a name or a mapping of CorpusSource fields, not {spec!r}")
    fields = {f.name for f in dataclasses.fields(CorpusSource)}
    unknown = sorted(set(spec) - fields)
    if unknown:
        raise ValueError(f"unknown CorpusSource field(s) {unknown}; allowed: {sorted(fields)}")
    return CorpusSource(**spec)


def fetch(kind: str, spec: str | dict, out: str | Path, *, docs_per_part: int, max_documents: int | None) -> dict:
    """`salad fetch`: this process's rank (torchrun's RANK/WORLD_SIZE) of corpus `kind` into `out`."""
    from salad.storage.store import distributed_rank

    rank, world_size = distributed_rank()
    source = source_of(spec)
    run = fetch_webdataset_speech if kind == "natural_speech" else fetch_text
    return {"corpus": kind, "source": source.name, "out": str(out),
            **run(source, out, docs_per_part=docs_per_part, max_documents=max_documents, rank=rank,
                  world_size=world_size)}


def _load_stream(source: CorpusSource, features=None):
    import datasets

    kwargs = {"split": source.split, "streaming": True}
    if source.data_files:
        kwargs["data_files"] = list(source.data_files)
    if features is not None:
        kwargs["features"] = features
    try:
        return datasets.load_dataset(source.name, source.subset, **kwargs)
    except (ConnectionError, FileNotFoundError) as e:
        raise FileNotFoundError(
            f"corpus {source.name!r} (subset {source.subset!r}) cannot be read here: {e}. On a machine with hub "
            f"access unset HF_DATASETS_OFFLINE, or point the corpus at local files (builder json/parquet/webdataset "
            f"with data_files).") from None


def _rank_stream(source: CorpusSource, rank: int, world_size: int, features=None):
    from datasets.distributed import split_dataset_by_node

    stream = _load_stream(source, features)
    return split_dataset_by_node(stream, rank=rank, world_size=world_size) if world_size > 1 else stream


def _document(source: CorpusSource, example: dict, rank: int, i: int) -> dict | None:
    """{id, text} of stream example i of `rank`; None for an empty text."""
    if source.text_field not in example:
        raise ValueError(f"{source.name}: example {i} of rank {rank} has no field {source.text_field!r} "
                         f"(fields: {sorted(example)})")
    text = example[source.text_field]
    if not isinstance(text, str) or not text.strip():
        return None
    return {"id": str(example[source.id_field]) if source.id_field else f"{source.name}:{rank}:{i}", "text": text}


def stream_documents(source: CorpusSource, rank: int = 0, world_size: int = 1, skip: int = 0) -> Iterator[dict]:
    """{id, text} for this rank's share of `source`, from its `skip`-th example on. Empty texts are dropped."""
    stream = _rank_stream(source, rank, world_size)
    for i, example in enumerate(stream.skip(skip) if skip else stream, start=skip):
        doc = _document(source, example, rank, i)
        if doc is not None:
            yield doc


@dataclass
class _Parts:
    """Committed parts of one rank in `out`: part k holds stream documents [k*N, (k+1)*N)."""

    out: Path
    rank: int
    docs_per_part: int
    done: list[dict] = field(default_factory=list)

    def marker(self, k: int) -> Path:
        return self.out / f"part-{self.rank:03d}-{k:05d}.done.json"

    def load(self) -> "_Parts":
        k = 0
        while self.marker(k).exists():
            self.done.append(read_json(self.marker(k)))
            k += 1
        return self

    @property
    def consumed(self) -> int:
        return sum(m["consumed"] for m in self.done)


def fetch_text(source: CorpusSource, out: str | Path, *, docs_per_part: int = 100_000, max_documents: int | None = None,
               rank: int = 0, world_size: int = 1) -> dict:
    """Stream this rank's share of a text corpus into `out/part-<rank>-<k>.jsonl.gz`; resumes after a kill."""
    out = Path(out)
    parts = _Parts(out, rank, docs_per_part).load()
    k, consumed, written = len(parts.done), parts.consumed, sum(m["documents"] for m in parts.done)
    batch, used = [], 0

    def commit():
        nonlocal k, batch, used, written
        write_jsonl(out / f"part-{rank:03d}-{k:05d}.jsonl.gz", batch)
        write_json(parts.marker(k), {"documents": len(batch), "consumed": used})
        written += len(batch)
        k, batch, used = k + 1, [], 0

    for i, example in enumerate(_rank_stream(source, rank, world_size).skip(consumed), start=consumed):
        if max_documents is not None and written + len(batch) >= max_documents:
            break
        used += 1
        doc = _document(source, example, rank, i)
        if doc is not None:
            batch.append(doc)
        if used == docs_per_part:
            commit()
    if used:
        commit()
    return {"rank": rank, "parts": k, "documents": written}


def _webdataset_features(audio_key: str):
    import datasets

    # audio as raw bytes: decoding through `datasets` would need torchcodec, which has no CPU build for our torch
    return datasets.Features({audio_key: datasets.Value("binary"), "json": {
        "id": datasets.Value("string"), "text": datasets.Value("string"), "duration": datasets.Value("float64"),
        "speaker": datasets.Value("string"), "language": datasets.Value("string")},
        "__key__": datasets.Value("string"), "__url__": datasets.Value("string")})


def fetch_webdataset_speech(source: CorpusSource, out: str | Path, *, audio_key: str = "mp3",
                            docs_per_part: int = 10_000, max_documents: int | None = None, rank: int = 0,
                            world_size: int = 1) -> dict:
    """Emilia-style webdataset shards -> audio files and flat manifests `out/part-<rank>-<k>.jsonl` for salad.speech.natural.

    Each utterance's audio bytes are checked to decode (soundfile reads mp3 and flac) before they are kept; an
    undecodable one is skipped and counted in the part's marker.
    """
    import soundfile

    out = Path(out)
    parts = _Parts(out, rank, docs_per_part).load()
    k, consumed, written = len(parts.done), parts.consumed, sum(m["documents"] for m in parts.done)
    stream = _rank_stream(source, rank, world_size, _webdataset_features(audio_key))
    if consumed:
        stream = stream.skip(consumed)
    batch, used, skipped = [], 0, []

    def commit():
        nonlocal k, batch, used, skipped, written
        write_jsonl(out / f"part-{rank:03d}-{k:05d}.jsonl", batch)
        write_json(parts.marker(k), {"documents": len(batch), "consumed": used, "skipped": skipped})
        written += len(batch)
        k, batch, used, skipped = k + 1, [], 0, []

    for example in stream:
        if max_documents is not None and written + len(batch) >= max_documents:
            break
        used += 1
        meta, key = example["json"], example["__key__"]
        utt_id = meta.get("id") or key
        try:
            info = soundfile.info(io.BytesIO(example[audio_key]))
        except Exception as e:  # noqa: BLE001 - any decoder failure means this utterance is unusable
            skipped.append({"id": utt_id, "reason": f"audio_unreadable: {e}"})
        else:
            rel = Path("audio") / f"{rank:03d}" / f"{utt_id}.{audio_key}"
            with atomic_path(out / rel) as tmp:
                tmp.write_bytes(example[audio_key])
            batch.append({"id": utt_id, "audio": rel.as_posix(), "text": meta.get("text", ""),
                          "sample_rate": info.samplerate, "duration_s": round(info.frames / info.samplerate, 4),
                          "speaker": meta.get("speaker")})
        if used == docs_per_part:
            commit()
    if used:
        commit()
    return {"rank": rank, "parts": k, "documents": written,
            "skipped": sum(len(read_json(parts.marker(j)).get("skipped", [])) for j in range(k))}


def read_parts(out: str | Path, pattern: str = "part-*.jsonl*") -> Iterator[dict]:
    """Every record of the committed parts in `out`, in (rank, part) order."""
    for path in sorted(Path(out).glob(pattern)):
        if path.name.endswith(".done.json") or not Path(str(path).split(".jsonl")[0] + ".done.json").exists():
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
