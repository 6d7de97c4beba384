"""The `natural` stage: a manifest of natural recordings (`natural.manifest`) into a speech store with word times.

The store has the format of the synthesized ones (salad.speech.synthesis), with the aligner that timed each document
and its speaker in its record, so that encoding and interleaving need not know where speech came from. Manifest
schemas, the per-recording checks, the reasons a recording is skipped and the word alignment are salad.speech.natural
and salad.speech.align. Shards are built by `natural.workers` processes (and torchrun ranks); a killed run resumes at
the first unfinished shard. `stats.json` counts recordings, usable documents, skips by reason, aligners, hours and
words.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import salad.speech.align
import salad.speech.natural
import salad.speech.tts
import salad.storage.store
from salad.config import Params
from salad.speech.align import DTWConfig
from salad.speech.natural import NaturalChecks, NaturalJob, read_manifest
from salad.storage.atomic import write_json
from salad.storage.store import (ShardedStore, build_store, check_skips, code_digest, content_stats,
                                 distributed_rank, fingerprint)

__all__ = ["ingest"]


def _file_digest(path: Path) -> str:
    """A short sha256 of a file's bytes ("missing" when there is none): a replaced recording rebuilds its shard."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:20] if path.exists() else "missing"


def ingest(params: Params, root: Path, out: Path) -> dict:
    """The `natural` stage: the manifest `params.natural.manifest` (relative to `root`) into the speech store `out`.

    Unusable recordings are skipped and counted by reason; finished shards survive a kill (salad.storage.store).
    """
    cfg = params.natural
    manifest = Path(root) / cfg.manifest
    if not manifest.exists():
        raise FileNotFoundError(f"natural speech manifest {manifest} not found (params natural.manifest)")
    audio_root = manifest.parent if cfg.audio_root is None else Path(root) / cfg.audio_root
    entries = read_manifest(manifest, audio_root)
    if not entries:
        raise ValueError(f"natural speech manifest {manifest} has no recording")
    job = NaturalJob(entries, aligner_kind=cfg.aligner, ctc_model=cfg.ctc_model,
                     dtw=DTWConfig(voice=cfg.dtw_voice, rate=cfg.dtw_rate),
                     checks=NaturalChecks(min_peak_dbfs=cfg.min_peak_dbfs, max_duration_s=cfg.max_duration_s))
    if any(e.words is None for e in entries):
        job.aligner()  # an aligner that cannot be built fails the stage here, before any recording is read
    # the audio files' bytes are part of the fingerprint, so a replaced recording rebuilds its shard
    audio = {e.id: _file_digest(e.audio_path) for e in entries}
    shaping = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "max_skip_fraction"}  # not the content's
    job_fp = fingerprint(shaping, [(e.id, e.text, e.words, audio[e.id]) for e in entries],
                         code_digest(salad.speech.natural, salad.speech.align, salad.speech.tts, salad.storage.store))
    rank, world = distributed_rank()
    stats = build_store(job, out, job_fp, shard_docs=cfg.shard_docs, workers=cfg.workers, rank=rank,
                        world_size=world, desc="natural")
    if stats is None:
        return {"rank": rank, "finished": "own shards; the last rank writes stats.json"}
    records = ShardedStore(out).records
    reasons: dict[str, int] = {}
    for s in stats["skipped_documents"]:
        reason = s["reason"].split(":")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    aligned_by: dict[str, int] = {}
    for r in records:
        aligned_by[r["aligner"]] = aligned_by.get(r["aligner"], 0) + 1
    stats.update(recordings=len(entries), skipped_by_reason=reasons, aligned_by=aligned_by,
                 hours=round(sum(r["num_samples"] / r["sample_rate"] for r in records) / 3600, 4),
                 words=sum(len(r["words"]) for r in records))
    write_json(out / "stats.json", content_stats(stats))  # the counts stay readable when the check below fails
    check_skips(stats, cfg.max_skip_fraction, "natural", hint=f"relative audio paths resolve against {audio_root} "
                f"(natural.audio_root; null: the manifest's folder)")
    return stats
