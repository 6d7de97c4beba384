"""A sharded, resumable, memory-mapped store of per-document arrays (audio samples, encoder features).

Why: at paper scale a corpus is millions of documents and thousands of hours; one array per corpus cannot be written
by many processes, cannot resume after a kill, and must be rewritten whole for one bad document. So a corpus is cut
into shards of `shard_docs` consecutive documents; each shard is built by one worker and committed on its own.

Layout of a store directory:

    shards/00000.npy        the shard's arrays concatenated along axis 0 (int16 audio, or float16 [frames, dim])
    shards/00000.jsonl      one record per document of the shard: the job's fields + offset, length (rows)
    shards/00000.done.json  commit marker, written last: fingerprint, counts, skipped documents with their reasons
    index.jsonl             every record of every shard, in document order, with its `shard` (written after all)

Commit protocol: a shard's .npy and .jsonl are each written atomically (temporary file + rename), then the marker.
A shard counts as finished only when its marker exists *and* carries the current fingerprint (a hash of the job's
configuration, its inputs and the shard's document ids), so a killed run resumes without redoing finished shards,
and a change of params or inputs rebuilds exactly the shards it affects. Files of shards that are no longer in the
plan are removed before the index is written.

Parallelism: `workers` processes on one machine (spawned, so each worker starts from clean library state), and
`rank`/`world_size` across machines (torchrun's RANK and WORLD_SIZE, or an array of jobs): rank r builds the shards
k with k % world_size == r. Each rank commits its shards, then checks whether every shard is finished; the rank that
finds them all finished (at least the last one to finish does) writes `index.jsonl`. Writing the index twice is
harmless: its content depends only on the committed shards.

Bad documents: a job raises `ValueError` for a document it cannot process (e.g. text with no speakable word). The
document is skipped and counted (id and reason in the shard's marker and in the build's stats), never a crash that
loses finished shards. Anything else (a bug, a missing model) is an error that stops the build.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from salad.storage.atomic import read_json, read_jsonl, save_npy, write_json, write_jsonl

__all__ = ["ShardJob", "ShardedStore", "build_store", "code_digest", "fingerprint", "distributed_rank"]

_SHARD_FILE = re.compile(r"^(\d{5,})\.(npy|jsonl|done\.json)$")


class ShardJob(Protocol):
    """What a store is built from: N documents, each turned into (record, array) by `run`. Must be picklable."""

    def __len__(self) -> int: ...

    def doc_id(self, i: int) -> str: ...

    def run(self, i: int) -> tuple[dict, np.ndarray]:
        """Record (JSON-serialisable, with "id") and array of document i; ValueError = skip this document."""
        ...


def fingerprint(*parts) -> str:
    """A stable hash of JSON-serialisable parts (configs, input hashes)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) when not launched by torchrun."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world


def _shard_path(out: Path, k: int, suffix: str) -> Path:
    return out / "shards" / f"{k:05d}.{suffix}"


def _shard_fingerprint(job_fingerprint: str, ids: list[str]) -> str:
    return fingerprint(job_fingerprint, ids)


def _is_done(out: Path, k: int, shard_fp: str) -> bool:
    marker = _shard_path(out, k, "done.json")
    if not marker.exists():
        return False
    try:
        return read_json(marker).get("fingerprint") == shard_fp
    except (OSError, ValueError):
        return False


def _build_shard(job: ShardJob, out: Path, k: int, lo: int, hi: int, shard_fp: str) -> dict:
    """Run documents [lo, hi) of `job` and commit them as shard k; return the shard's marker."""
    records, arrays, skipped, offset = [], [], [], 0
    for i in range(lo, hi):
        try:
            record, array = job.run(i)
        except ValueError as e:
            skipped.append({"id": job.doc_id(i), "reason": str(e)})
            continue
        array = np.asarray(array)
        if arrays and (array.dtype != arrays[0].dtype or array.shape[1:] != arrays[0].shape[1:]):
            raise ValueError(f"document {record['id']!r}: array {array.dtype}{list(array.shape)} does not match "
                             f"the shard's {arrays[0].dtype}{list(arrays[0].shape)}")
        records.append({**record, "offset": offset, "length": int(array.shape[0])})
        arrays.append(array)
        offset += int(array.shape[0])
    data = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)
    save_npy(_shard_path(out, k, "npy"), data)
    write_jsonl(_shard_path(out, k, "jsonl"), records)
    marker = {"fingerprint": shard_fp, "documents": len(records), "rows": offset, "skipped": skipped}
    write_json(_shard_path(out, k, "done.json"), marker)
    return marker


def _plan(n: int, shard_docs: int) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + shard_docs)) for lo in range(0, n, shard_docs)]


def _remove_stale(out: Path, n_shards: int) -> None:
    shard_dir = out / "shards"
    if not shard_dir.exists():
        return
    for path in shard_dir.iterdir():
        m = _SHARD_FILE.match(path.name)
        if (m and int(m.group(1)) >= n_shards) or path.name.startswith("."):  # old shards, temp files of a kill
            path.unlink()


def build_store(job: ShardJob, out: str | Path, job_fingerprint: str, *, shard_docs: int = 256, workers: int = 1,
                rank: int = 0, world_size: int = 1, desc: str = "build") -> dict | None:
    """Build (or finish building) the store of `job` in `out`.

    Returns the build's stats (documents, rows, skipped: [{id, reason}], shards built now / reused), or None on a
    rank that finished its shards before the others (the last rank to finish writes the index and returns stats).
    The index is removed before any shard is touched and written again last, so a build that is killed leaves a
    store that readers refuse (`ShardedStore` needs the index), never old offsets into rewritten shards.
    """
    if shard_docs < 1 or workers < 1:
        raise ValueError(f"shard_docs and workers must be positive, got {shard_docs} and {workers}")
    out = Path(out)
    n = len(job)
    plan = _plan(n, shard_docs)
    shard_fps = [_shard_fingerprint(job_fingerprint, [job.doc_id(i) for i in range(lo, hi)]) for lo, hi in plan]
    mine = [k for k in range(len(plan)) if k % world_size == rank]
    todo = [k for k in mine if not _is_done(out, k, shard_fps[k])]
    (out / "shards").mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (out / "index.jsonl").unlink(missing_ok=True)
        _remove_stale(out, len(plan))

    with tqdm(total=sum(plan[k][1] - plan[k][0] for k in todo), desc=desc, unit="doc", mininterval=5,
              disable=not todo) as bar:
        if workers == 1 or len(todo) <= 1:
            for k in todo:
                _build_shard(job, out, k, *plan[k], shard_fps[k])
                bar.update(plan[k][1] - plan[k][0])
        else:
            # spawn, not fork: workers must not inherit torch's thread pools or a loaded synthesizer's state
            ctx = multiprocessing.get_context("spawn")
            n = min(workers, len(todo))
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_share_cores,
                                     initargs=(max(1, (os.cpu_count() or 1) // n),)) as pool:
                futures = {pool.submit(_build_shard, job, out, k, *plan[k], shard_fps[k]): k for k in todo}
                for future in as_completed(futures):
                    future.result()  # re-raises a worker's error here, after the other shards are committed
                    k = futures[future]
                    bar.update(plan[k][1] - plan[k][0])

    if not all(_is_done(out, k, shard_fps[k]) for k in range(len(plan))):
        print(f"{desc}: rank {rank} finished its {len(mine)} shard(s); the last rank to finish writes the index",
              file=sys.stderr)
        return None
    stats = _write_index(out, len(plan), built=len(todo))
    print(f"{desc}: {stats['shards_built']} shard(s) built, {stats['shards_reused']} reused", file=sys.stderr)
    return stats


def _share_cores(threads: int) -> None:
    """Worker start-up: torch's intra-op pool gets this worker's share of the cores. With its default (every core
    in every worker) the workers' pools fight over the cores: Kokoro and Mimi ran 10x slower under such load."""
    import torch

    torch.set_num_threads(threads)


def _write_index(out: Path, n_shards: int, built: int) -> dict:
    records, skipped, rows = [], [], 0
    for k in range(n_shards):
        marker = read_json(_shard_path(out, k, "done.json"))
        skipped += marker["skipped"]
        rows += marker["rows"]
        records += [{**r, "shard": k} for r in read_jsonl(_shard_path(out, k, "jsonl"))]
    write_jsonl(out / "index.jsonl", records)
    return {"documents": len(records), "rows": rows, "skipped": len(skipped), "skipped_documents": skipped,
            "shards": n_shards, "shards_built": built, "shards_reused": n_shards - built}


class ShardedStore:
    """Read a finished store: records by document id, arrays as memory-mapped views of their shard."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = self.path / "index.jsonl"
        if not index.exists():
            raise FileNotFoundError(f"{self.path}: no index.jsonl; the store is missing or was not finished "
                                    f"(rerun the stage that builds it)")
        self.records = read_jsonl(index)
        self._by_id: dict[str, int] = {}
        for i, r in enumerate(self.records):
            if r["id"] in self._by_id:
                raise ValueError(f"{index}: document {r['id']!r} appears twice")
            self._by_id[r["id"]] = i
        self._shards: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._by_id

    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    def record(self, doc_id: str) -> dict:
        if doc_id not in self._by_id:
            raise KeyError(f"{self.path}: no document {doc_id!r}")
        return self.records[self._by_id[doc_id]]

    def array(self, doc_id: str) -> np.ndarray:
        r = self.record(doc_id)
        shard = self._shards.get(r["shard"])
        if shard is None:
            shard = self._shards[r["shard"]] = np.load(_shard_path(self.path, r["shard"], "npy"), mmap_mode="r")
        return shard[r["offset"]:r["offset"] + r["length"]]

    def digest(self) -> str:
        """Hash of the index and the shard markers (which carry the fingerprints of the code, configuration and
        inputs that built each shard): it changes whenever the store's content can have changed."""
        h = hashlib.sha256((self.path / "index.jsonl").read_bytes())
        for k in sorted({r["shard"] for r in self.records}):
            h.update(_shard_path(self.path, k, "done.json").read_bytes())
        return h.hexdigest()[:20]


class CannotBuild(RuntimeError):
    """Something a stage needs for every record (a voice, a model, an aligner) cannot be built: an error of the
    stage, raised as such, never counted as a skip of the record at hand (skips are ValueErrors)."""


class TooManySkipped(RuntimeError):
    """A stage's store has no usable document, or more skipped ones than its params allow."""


def check_skips(stats: dict, max_fraction: float, what: str, hint: str = "") -> None:
    """Fail when the store of `stats` (from `build_store`) is empty though it had input, or when its skipped share
    exceeds `max_fraction`; the error gives the counts and the reasons, most frequent first."""
    total = stats["documents"] + stats["skipped"]
    if total == 0 or (stats["documents"] > 0 and stats["skipped"] <= max_fraction * total):
        return
    reasons: dict[str, int] = {}
    for s in stats["skipped_documents"]:
        reason = s["reason"].split(":")[0][:120]
        reasons[reason] = reasons.get(reason, 0) + 1
    listed = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
    first = stats["skipped_documents"][0]["id"]
    problem = ("no usable document" if stats["documents"] == 0 else
               f"{stats['skipped']} skipped, more than max_skip_fraction {max_fraction} of them")
    raise TooManySkipped(f"{what}: {problem} ({stats['skipped']} of {total} skipped, first {first!r}): {listed}"
                         + (f". {hint}" if hint else ""))


# How a build went (which shards were rebuilt or reused), not what the store holds: kept out of written stats, so that
# an output's bytes do not depend on whether an earlier run was interrupted.
BUILD_COUNTS = ("shards_built", "shards_reused")


def content_stats(stats: dict) -> dict:
    """`stats` of one store, or of several by name, without the build counts (what a stage writes to stats.json)."""
    return {k: content_stats(v) if isinstance(v, dict) else v for k, v in stats.items() if k not in BUILD_COUNTS}


def code_digest(*modules, backend: object | None = None) -> str:
    """Hash of the source files of `modules`: part of a store's fingerprint, so that a code change rebuilds shards.

    `backend` (a synthesizer or encoder object) adds the module that defines its class: its rules shape the output,
    and a backend module is hashed only when it is the one in use.
    """
    modules = list(modules)
    own = sys.modules.get(type(backend).__module__) if backend is not None else None
    if own is not None and own not in modules and getattr(own, "__file__", None):
        modules.append(own)
    h = hashlib.sha256()
    for module in modules:
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:20]
