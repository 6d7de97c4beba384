"""Natural speech ingestion (salad.speech.natural): manifest schemas, word times, resampling, and every bad-input path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from salad.speech.align import DTWAligner, speakable_words
from salad.speech.natural import NaturalJob, RecordSkipped, SKIP_REASONS, iter_natural, new_stats, read_manifest
from salad.speech.tts import EspeakTTS

ROOT = Path(__file__).resolve().parents[2]
LJ_MANIFEST = ROOT / "data/raw/speech/ljspeech_sample_manifest.jsonl.gz"
SR_FILE = 22050
TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def aligner() -> DTWAligner:
    return DTWAligner()


@pytest.fixture(scope="module")
def clip():
    """espeak speech at 22.05 kHz (the LJ rate) and its true word times."""
    return EspeakTTS(sample_rate=SR_FILE).synthesize(TEXT)


def write_manifest(folder: Path, records: list, name: str = "manifest.jsonl.gz") -> Path:
    path = folder / name
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def flat(rec_id: str, audio: str, text: str = TEXT, n: int | None = None, **extra) -> dict:
    out = {"id": rec_id, "audio": audio, "sample_rate": SR_FILE, "text": text, "speaker": "s1", **extra}
    if n is not None:
        out.update(num_samples=n, duration_s=round(n / SR_FILE, 3))
    return out


def test_lj_sample_all_recordings_aligned(aligner: DTWAligner) -> None:
    stats = new_stats(LJ_MANIFEST)
    out = list(iter_natural(LJ_MANIFEST, aligner, stats=stats, progress=False))
    manifest = [json.loads(line) for line in gzip.open(LJ_MANIFEST, "rt")]
    assert len(out) == len(manifest) == stats["usable"] == stats["recordings"] == 16
    assert stats["skipped"] == {} and stats["aligned_by"] == {"dtw": 16}
    for (record, audio), m in zip(out, manifest):
        assert set(record) == {"id", "text", "speaker", "aligner", "sample_rate", "num_samples", "words"}
        assert record["id"] == m["id"] and record["text"] == m["text"] and record["sample_rate"] == 24000
        assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) == record["num_samples"]
        assert len(audio) == -(-m["num_samples"] * 160 // 147)  # resample_poly 160/147 length
        assert [tuple(w[:3]) for w in record["words"]] == speakable_words(m["text"])
        previous = 0.0
        for _, _, _, start, end in record["words"]:
            assert previous <= start < end <= len(audio) / 24000 + 1e-4
            previous = end
    assert stats["words"] == sum(len(r["words"]) for r, _ in out)
    assert stats["audio_hours"] == pytest.approx(sum(len(a) for _, a in out) / 24000 / 3600, abs=1e-5)


def test_resampling_keeps_times(tmp_path: Path, clip, aligner: DTWAligner) -> None:
    soundfile.write(tmp_path / "a.flac", clip.audio, SR_FILE)
    given = [{"word": w.word, "start": w.start, "end": w.end} for w in clip.words]
    path = write_manifest(tmp_path, [flat("a", "a.flac", n=len(clip.audio), words=given)])
    (record, audio), = iter_natural(path, None, progress=False)
    assert record["aligner"] == "manifest"
    assert [w[3:] for w in record["words"]] == [[round(w.start, 4), round(w.end, 4)] for w in clip.words]
    pcm = soundfile.read(tmp_path / "a.flac", dtype="float32")[0]
    expected = np.clip(resample_poly(pcm, 160, 147), -1, 1)
    assert np.allclose(audio, expected, atol=1e-6)
    # the same recording aligned by DTW instead (no words in the manifest) lands near the true times
    path = write_manifest(tmp_path, [flat("a", "a.flac", n=len(clip.audio))], "m2.jsonl.gz")
    (record, _), = iter_natural(path, aligner, progress=False)
    errors = [abs(w[3] - t.start) for w, t in zip(record["words"], clip.words)]
    assert record["aligner"] == "dtw" and np.median(errors) < 0.03


def test_lhotse_cut_with_offset_and_alignment(tmp_path: Path, clip) -> None:
    lead = int(1.5 * SR_FILE)
    long = np.concatenate([np.zeros(lead, np.float32) + 1e-3, clip.audio, np.zeros(SR_FILE, np.float32)])
    soundfile.write(tmp_path / "chapter.flac", long, SR_FILE)
    cut_start, sup_start = 1.0, 0.5  # the utterance starts 1.5 s into the file, where the speech starts
    alignment = [[w.word.strip(".,").upper(), round(w.start + sup_start, 4), round(w.end - w.start, 4)]
                 for w in clip.words]
    alignment.insert(3, ["<sil>", 0.9, 0.1])
    cut = {"id": "cut-1", "start": cut_start, "duration": 3.5,
           "recording": {"id": "chapter", "sources": [{"type": "file", "channels": [0], "source": "chapter.flac"}],
                         "sampling_rate": SR_FILE, "num_samples": len(long), "duration": len(long) / SR_FILE},
           "supervisions": [{"id": "s", "recording_id": "chapter", "start": sup_start, "duration": 3.0,
                             "text": TEXT, "speaker": "reader-7", "alignment": {"word": alignment}}]}
    (record, audio), = iter_natural(write_manifest(tmp_path, [cut]), None, progress=False)
    assert record["speaker"] == "reader-7" and record["num_samples"] == len(audio)
    assert len(audio) == pytest.approx(3.0 * 24000, abs=2)
    for w, t in zip(record["words"], clip.words):
        assert w[3] == pytest.approx(t.start, abs=2e-4) and w[4] == pytest.approx(min(t.end, 3.0), abs=2e-4)
    seg = soundfile.read(tmp_path / "chapter.flac", start=lead, frames=3 * SR_FILE, dtype="float32")[0]
    assert np.allclose(audio, np.clip(resample_poly(seg, 160, 147), -1, 1), atol=1e-6)


def test_bad_recordings_are_counted_skips(tmp_path: Path, clip, aligner: DTWAligner) -> None:
    n = len(clip.audio)
    soundfile.write(tmp_path / "good.flac", clip.audio, SR_FILE)
    soundfile.write(tmp_path / "zeros.flac", np.zeros(n, np.float32), SR_FILE)
    soundfile.write(tmp_path / "quiet.flac", clip.audio * 1e-3, SR_FILE)
    soundfile.write(tmp_path / "sr16k.flac", clip.audio[:16000], 16000)
    (tmp_path / "garbage.flac").write_bytes(b"not audio at all" * 100)
    given = [{"word": w.word, "start": w.start, "end": w.end} for w in clip.words]
    records = [
        flat("ok-1", "good.flac", n=n),
        flat("missing", "nowhere.flac", n=n),
        flat("garbage", "garbage.flac", n=n),
        flat("zeros", "zeros.flac", n=n),
        flat("quiet", "quiet.flac", n=n),
        {**flat("rate", "sr16k.flac"), "sample_rate": SR_FILE},
        flat("count", "good.flac", n=n + 5),
        {**flat("dur", "good.flac", n=n), "duration_s": n / SR_FILE + 0.5},
        flat("empty", "good.flac", text="   ", n=n),
        flat("nospeak", "good.flac", text="— … !!", n=n),
        flat("chinese", "good.flac", text="你好 世界", n=n),
        flat("mismatch", "good.flac", n=n, words=given[:-1]),
        flat("invalid", "good.flac", n=n, words=[{**g, "end": g["start"] - 0.1} for g in given]),
        flat("ok-2", "good.flac", n=n, words=given),
        flat("swapped", "good.flac", text=" ".join(["another"] * 299), n=n),
    ]
    stats = new_stats("m")
    out = list(iter_natural(write_manifest(tmp_path, records), aligner, stats=stats, progress=False))
    assert [r["id"] for r, _ in out] == ["ok-1", "ok-2"]
    assert stats["recordings"] == len(records) and stats["usable"] == 2
    expected = {"missing": "audio_missing", "garbage": "audio_unreadable", "zeros": "silent", "quiet": "silent",
                "rate": "sample_rate_mismatch", "count": "num_samples_mismatch", "dur": "duration_mismatch",
                "empty": "empty_transcript", "nospeak": "no_speakable_word", "chinese": "non_latin",
                "mismatch": "alignment_mismatch", "invalid": "alignment_invalid", "swapped": "transcript_mismatch"}
    assert {s["id"]: s["reason"] for s in stats["skipped_records"]} == expected
    assert sum(stats["skipped"].values()) == len(expected) and stats["skipped"]["silent"] == 2
    assert all(r in SKIP_REASONS for r in stats["skipped"])


def test_no_aligner_skips_records_without_alignment(tmp_path: Path, clip) -> None:
    soundfile.write(tmp_path / "good.flac", clip.audio, SR_FILE)
    stats = new_stats("m")
    assert list(iter_natural(write_manifest(tmp_path, [flat("a", "good.flac")]), None, stats=stats,
                             progress=False)) == []
    assert stats["skipped"] == {"no_alignment": 1}


@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "audio": "x.flac", "text": "hi"', ":2: not valid JSON"),
    ('["a", "b"]', ":2: a record must be a JSON object"),
    ('{"id": "b", "text": "hi"}', ":2: record 'b': needs an 'audio'"),
    ('{"id": "b", "audio": "x.flac"}', ":2: record 'b': needs a string 'text'"),
    ('{"id": "a", "audio": "x.flac", "text": "hi"}', ":2: record id 'a' already appears on line 1"),
    ('{"id": "b", "audio": "x.flac", "text": "hi", "sample_rate": "fast"}', "sample_rate must be a number"),
    ('{"id": "b", "audio": "x.flac", "text": "hi", "words": [{"word": "hi"}]}', r"words\[0\] is not a word"),
])
def test_malformed_manifest_fails_before_any_work(tmp_path: Path, line: str, message: str) -> None:
    path = write_manifest(tmp_path, [{"id": "a", "audio": "x.flac", "text": "hi"}, line])
    with pytest.raises(ValueError, match=message):
        next(iter_natural(path, None, progress=False))


def test_natural_job_builds_a_store(tmp_path: Path, clip) -> None:
    from salad.storage.store import ShardedStore, build_store

    soundfile.write(tmp_path / "good.flac", clip.audio, SR_FILE)
    given = [{"word": w.word, "start": w.start, "end": w.end} for w in clip.words]
    manifest = write_manifest(tmp_path, [flat("a", "good.flac", words=given), flat("b", "missing.flac"),
                                         flat("c", "good.flac")])
    job = NaturalJob(read_manifest(manifest), aligner_kind="dtw")
    stats = build_store(job, tmp_path / "store", "fp", shard_docs=2, workers=1, desc="natural test")
    assert stats["documents"] == 2 and [s["id"] for s in stats["skipped_documents"]] == ["b"]
    assert stats["skipped_documents"][0]["reason"].startswith("audio_missing:")
    store = ShardedStore(tmp_path / "store")
    pcm = store.array("a")
    assert pcm.dtype == np.int16 and len(pcm) == store.record("a")["num_samples"]
    assert store.record("c")["aligner"] == "dtw" and store.record("a")["aligner"] == "manifest"


def test_record_skipped_names_the_record() -> None:
    e = RecordSkipped("LJ001-0001", "silent", "all zeros")
    assert isinstance(e, ValueError) and str(e) == "silent: all zeros (record 'LJ001-0001')"
    with pytest.raises(KeyError):
        RecordSkipped("x", "cosmic rays", "")


def test_natural_stage_ingests_the_shipped_sample_and_resumes(tmp_path):
    from salad.config import load_params
    from salad.stages.natural import ingest
    from salad.storage.store import CannotBuild
    from salad.storage.store import ShardedStore

    repo = Path(__file__).resolve().parents[2]
    params = load_params(repo / "params/ci.yaml")
    stats = ingest(params, repo, tmp_path / "natural")
    assert stats["documents"] + stats["skipped"] == stats["recordings"] == 16
    assert stats["aligned_by"] == {"dtw": stats["documents"]} and stats["words"] > 200
    store = ShardedStore(tmp_path / "natural")
    rec = store.record(store.ids()[0])
    assert rec["sample_rate"] == 24000 and rec["num_samples"] == len(store.array(rec["id"]))
    again = ingest(params, repo, tmp_path / "natural")
    assert again["shards_built"] == 0 and again["documents"] == stats["documents"]


def _natural_params(**natural):
    import dataclasses

    from salad.config import load_params

    repo = Path(__file__).resolve().parents[2]
    params = load_params(repo / "params/ci.yaml")
    return dataclasses.replace(params, natural=dataclasses.replace(params.natural, **natural)), repo


def test_relative_audio_paths_resolve_against_audio_root_and_zero_usable_recordings_fail(tmp_path):
    """A manifest whose audio paths are relative to the repository root: with the default (the manifest's own
    folder) nothing is found and the stage fails with the counts and where it looked; natural.audio_root fixes it."""
    from salad.stages.natural import ingest
    from salad.storage.store import CannotBuild
    from salad.storage.store import TooManySkipped

    repo = Path(__file__).resolve().parents[2]
    manifest = tmp_path / "elsewhere" / "manifest.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"id": "LJ001-0002", "audio": "data/raw/speech/ljspeech_sample/LJ001-0002.flac",
                                    "text": "in being comparatively modern."}) + "\n")
    params, _ = _natural_params(manifest=str(manifest), workers=1)
    with pytest.raises(TooManySkipped, match=r"natural: no usable document \(1 of 1 skipped.*audio_missing.*"
                                             r"resolve against .*elsewhere"):
        ingest(params, repo, tmp_path / "store")
    params, _ = _natural_params(manifest=str(manifest), audio_root=".", workers=1)
    stats = ingest(params, repo, tmp_path / "store")
    assert stats["documents"] == 1 and stats["skipped"] == 0


def test_an_aligner_that_cannot_be_built_fails_before_any_recording_is_read(tmp_path):
    from salad.stages.natural import ingest
    from salad.storage.store import CannotBuild

    params, repo = _natural_params(aligner="ctc", ctc_model=str(tmp_path / "no-model"), workers=1)
    with pytest.raises(CannotBuild, match="aligner .ctc. cannot be built"):
        ingest(params, repo, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_a_nan_duration_in_a_manifest_names_the_record(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "r1", "audio": "a.flac", "text": "hi", "duration_s": NaN}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:1: record 'r1': duration_s must be a finite number"):
        read_manifest(manifest)
