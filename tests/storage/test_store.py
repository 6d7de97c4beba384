"""The sharded store: content, counted skips, resumption after a kill, parallel workers and ranks, stale shards;
and the synthesize/encode stages built on it (real espeak-ng and the log-mel encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from salad.speech.encoding import encode_corpus
from salad.speech.encoders.logmel import LogMelEncoder
from salad.storage.store import BUILD_COUNTS, ShardedStore, build_store, content_stats
from salad.speech.synthesis import assign_voices, synthesize_corpus
from salad.speech.tts import EspeakTTS


class ToyJob:
    """Document i -> an [i % 5 + 1, 3] array of i; ids in `bad` are rejected (ValueError); `crash_at` simulates a
    kill (any other exception stops the build)."""

    def __init__(self, n, bad=(), crash_at=None, dtype=np.float16):
        self.n, self.bad, self.crash_at, self.dtype = n, set(bad), crash_at, dtype

    def __len__(self):
        return self.n

    def doc_id(self, i):
        return f"doc{i:03d}"

    def run(self, i):
        if i == self.crash_at:
            raise RuntimeError("killed")
        if i in self.bad:
            raise ValueError(f"bad document {i}")
        return {"id": self.doc_id(i), "value": i}, np.full((i % 5 + 1, 3), i, dtype=self.dtype)


def files(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_store_roundtrip_in_document_order(tmp_path):
    stats = build_store(ToyJob(23), tmp_path / "s", "fp", shard_docs=5)
    store = ShardedStore(tmp_path / "s")
    assert stats["documents"] == 23 and stats["shards"] == 5 and stats["skipped"] == 0
    assert stats["rows"] == sum(i % 5 + 1 for i in range(23))
    assert store.ids() == [f"doc{i:03d}" for i in range(23)]
    for i in range(23):
        a = store.array(f"doc{i:03d}")
        assert a.shape == (i % 5 + 1, 3) and np.all(a == i)
        assert isinstance(a, np.memmap) or isinstance(a.base, np.memmap)
        assert store.record(f"doc{i:03d}")["value"] == i
    assert "doc999" not in store
    with pytest.raises(KeyError, match="doc999"):
        store.array("doc999")


def test_bad_documents_are_skipped_and_counted(tmp_path):
    stats = build_store(ToyJob(12, bad={3, 7}), tmp_path / "s", "fp", shard_docs=4)
    assert stats["skipped"] == 2 and stats["documents"] == 10
    assert [s["id"] for s in stats["skipped_documents"]] == ["doc003", "doc007"]
    assert stats["skipped_documents"][0]["reason"] == "bad document 3"
    assert "doc003" not in ShardedStore(tmp_path / "s")


def test_a_killed_build_resumes_without_redoing_finished_shards(tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        build_store(ToyJob(20, crash_at=13), tmp_path / "s", "fp", shard_docs=5)
    assert not (tmp_path / "s" / "index.jsonl").exists()  # an unfinished store cannot be mistaken for a finished one
    with pytest.raises(FileNotFoundError, match="not finished"):
        ShardedStore(tmp_path / "s")
    done_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "shards").glob("*.done.json")}
    assert sorted(done_before) == ["00000.done.json", "00001.done.json"]

    stats = build_store(ToyJob(20), tmp_path / "s", "fp", shard_docs=5)
    assert stats["shards_built"] == 2 and stats["shards_reused"] == 2
    for name, mtime in done_before.items():  # finished shards were not rewritten
        assert (tmp_path / "s" / "shards" / name).stat().st_mtime_ns == mtime
    build_store(ToyJob(20), tmp_path / "clean", "fp", shard_docs=5)
    assert files(tmp_path / "s") == files(tmp_path / "clean")


def test_a_new_fingerprint_rebuilds_and_stale_shards_are_removed(tmp_path):
    build_store(ToyJob(20), tmp_path / "s", "fp1", shard_docs=5)
    (tmp_path / "s" / "shards" / ".00001.npy.abc.tmp.npy").write_bytes(b"half")  # left by a kill
    stats = build_store(ToyJob(8), tmp_path / "s", "fp2", shard_docs=5)
    assert stats["shards_built"] == 2
    assert sorted(p.name for p in (tmp_path / "s" / "shards").iterdir()) == [
        "00000.done.json", "00000.jsonl", "00000.npy", "00001.done.json", "00001.jsonl", "00001.npy"]
    assert len(ShardedStore(tmp_path / "s")) == 8


def test_a_killed_rebuild_of_a_finished_store_leaves_a_store_readers_refuse(tmp_path):
    build_store(ToyJob(20), tmp_path / "s", "fp1", shard_docs=5)
    assert len(ShardedStore(tmp_path / "s")) == 20
    with pytest.raises(RuntimeError, match="killed"):  # new inputs: shard 0 is rewritten, then the kill
        build_store(ToyJob(20, crash_at=7), tmp_path / "s", "fp2", shard_docs=5)
    with pytest.raises(FileNotFoundError, match="not finished"):  # never the old index over rewritten shards
        ShardedStore(tmp_path / "s")
    build_store(ToyJob(20), tmp_path / "s", "fp2", shard_docs=5)
    build_store(ToyJob(20), tmp_path / "clean", "fp2", shard_docs=5)
    assert files(tmp_path / "s") == files(tmp_path / "clean")


def test_written_stats_do_not_depend_on_which_shards_were_reused(tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        build_store(ToyJob(20, crash_at=13), tmp_path / "s", "fp", shard_docs=5)
    resumed = build_store(ToyJob(20), tmp_path / "s", "fp", shard_docs=5)
    clean = build_store(ToyJob(20), tmp_path / "clean", "fp", shard_docs=5)
    assert resumed["shards_reused"] == 2 and clean["shards_reused"] == 0
    assert content_stats({"a": resumed}) == content_stats({"a": clean})
    assert not set(BUILD_COUNTS) & set(content_stats(resumed))


def test_changing_one_document_rebuilds_only_its_shard(tmp_path):
    build_store(ToyJob(20), tmp_path / "s", "fp", shard_docs=5)

    class Renamed(ToyJob):
        def doc_id(self, i):
            return "renamed" if i == 7 else super().doc_id(i)

    stats = build_store(Renamed(20), tmp_path / "s", "fp", shard_docs=5)
    assert stats["shards_built"] == 1 and stats["shards_reused"] == 3


def test_two_workers_write_the_same_store_as_one(tmp_path):
    build_store(ToyJob(30, bad={4}), tmp_path / "one", "fp", shard_docs=4, workers=1)
    build_store(ToyJob(30, bad={4}), tmp_path / "two", "fp", shard_docs=4, workers=2)
    assert files(tmp_path / "one") == files(tmp_path / "two")


def test_ranks_split_the_shards_and_the_last_one_writes_the_index(tmp_path):
    assert build_store(ToyJob(18), tmp_path / "r", "fp", shard_docs=4, rank=0, world_size=2) is None
    built = sorted(p.name for p in (tmp_path / "r" / "shards").glob("*.done.json"))
    assert built == ["00000.done.json", "00002.done.json", "00004.done.json"]
    stats = build_store(ToyJob(18), tmp_path / "r", "fp", shard_docs=4, rank=1, world_size=2)
    assert stats["documents"] == 18 and stats["shards_built"] == 2
    build_store(ToyJob(18), tmp_path / "single", "fp", shard_docs=4)
    assert files(tmp_path / "r") == files(tmp_path / "single")


def test_mismatched_arrays_in_a_shard_are_an_error(tmp_path):
    class Mixed(ToyJob):
        def run(self, i):
            record, a = super().run(i)
            return record, a[:, :2] if i == 2 else a

    with pytest.raises(ValueError, match="doc002"):
        build_store(Mixed(4), tmp_path / "s", "fp", shard_docs=4)


def test_duplicate_ids_in_an_index_are_an_error(tmp_path):
    build_store(ToyJob(3), tmp_path / "s", "fp")
    index = tmp_path / "s" / "index.jsonl"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        ShardedStore(tmp_path / "s")


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "— — —",  # no speakable word: skipped and counted
    "It was the best of times, it was the worst of times.",
    "In 1984, 3 of the 12 clocks struck thirteen.",
    "Call me Ishmael. Some years ago, never mind how long precisely.",
]


@pytest.fixture(scope="module")
def speech_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech")
    records = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]
    stats = synthesize_corpus(EspeakTTS(), records, out, "toy", workers=2, shard_docs=2, rank=0, world_size=1)
    return out, stats


def test_synthesized_store_matches_direct_synthesis_and_counts_the_skip(speech_store):
    out, stats = speech_store
    assert stats["documents"] == 4 and stats["skipped"] == 1
    assert stats["skipped_documents"][0]["id"] == "t1"
    assert "no speakable word" in stats["skipped_documents"][0]["reason"]
    store = ShardedStore(out)
    direct = EspeakTTS().synthesize(TEXTS[3])
    rec = store.record("t3")
    pcm = np.asarray(store.array("t3"))
    assert rec["num_samples"] == len(pcm) == len(direct.audio)
    assert np.array_equal(pcm, np.clip(np.round(direct.audio * 32767.0), -32768, 32767).astype(np.int16))
    assert [w[:3] for w in rec["words"]] == [[w.word, w.char_start, w.char_end] for w in direct.words]
    assert rec["voice"] == "en-us" and rec["rate"] == 175


def test_encoded_store_matches_the_encoder_and_resumes(speech_store, tmp_path):
    speech, _ = speech_store
    encoder = LogMelEncoder(n_mels=40)
    stats = encode_corpus(encoder, speech, tmp_path / "f", "toy", shard_docs=2, rank=0, world_size=1)
    assert stats["documents"] == 4 and stats["dim"] == 160
    feats = ShardedStore(tmp_path / "f")
    audio = np.asarray(ShardedStore(speech).array("t4"), dtype=np.float32) / 32768.0
    expect = encoder(audio, 24000).astype(np.float16)
    assert np.array_equal(feats.array("t4"), expect) and feats.record("t4")["n_frames"] == len(expect)
    again = encode_corpus(encoder, speech, tmp_path / "f", "toy", shard_docs=2, rank=0, world_size=1)
    assert again["shards_built"] == 0 and again["shards_reused"] == 2
    other = encode_corpus(LogMelEncoder(n_mels=20), speech, tmp_path / "f", "toy", shard_docs=2, rank=0,
                          world_size=1)
    assert other["shards_built"] == 2 and other["dim"] == 80  # a different encoder is a different fingerprint


def test_voices_and_rates_are_drawn_per_document_with_the_seed():
    records = [{"id": f"d{i}", "text": "x"} for i in range(200)]
    a = assign_voices(records, ("en-us", "en-029"), (150, 200), seed=0)
    assert a == assign_voices(records, ("en-us", "en-029"), (150, 200), seed=0)
    assert a != assign_voices(records, ("en-us", "en-029"), (150, 200), seed=1)
    assert assign_voices(records[50:60], ("en-us", "en-029"), (150, 200), seed=0) == a[50:60]  # stable per id
    counts = {(r["voice"], r["rate"]) for r in a}
    assert counts == {("en-us", 150), ("en-us", 200), ("en-029", 150), ("en-029", 200)}
    assert 70 < sum(r["voice"] == "en-us" for r in a) < 130


def test_documents_with_their_own_voice_are_read_by_it(tmp_path):
    records = [{"id": "a", "text": TEXTS[0], "voice": "en-gb-x-rp", "rate": 200}]
    synthesize_corpus(EspeakTTS(), records, tmp_path / "s", "toy", rank=0, world_size=1)
    rec = ShardedStore(tmp_path / "s").record("a")
    direct = EspeakTTS(voice="en-gb-x-rp", rate=200).synthesize(TEXTS[0])
    assert (rec["voice"], rec["rate"]) == ("en-gb-x-rp", 200) and rec["num_samples"] == len(direct.audio)
    json.dumps(rec)


RANK_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_store import ToyJob
from salad.storage.store import build_store, distributed_rank
rank, world = distributed_rank()
stats = build_store(ToyJob(18), {out!r}, "fp", shard_docs=4, rank=rank, world_size=world)
print("RANK", rank, "OF", world, "INDEX" if stats else "WAITED")
"""


def test_torchrun_ranks_build_the_same_store_as_one_process(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "r")))
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script)],
                            capture_output=True, text=True, timeout=1800)  # a hang guard, far above the expected time
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RANK 0 OF 2" in result.stdout and "RANK 1 OF 2" in result.stdout and "INDEX" in result.stdout
    build_store(ToyJob(18), tmp_path / "single", "fp", shard_docs=4, rank=0, world_size=1)
    assert files(tmp_path / "r") == files(tmp_path / "single")


def test_code_digest_adds_the_module_of_the_backend_in_use():
    import salad.stages.encode
    import salad.speech.encoders.mimi
    from salad.speech.encoders.logmel import LogMelEncoder
    from salad.storage.store import code_digest

    logmel = LogMelEncoder(n_mels=8)
    assert code_digest(salad.stages.encode, backend=logmel) == code_digest(salad.stages.encode, salad.speech.encoders.logmel)
    assert code_digest(salad.stages.encode, salad.speech.encoders.logmel, backend=logmel) == code_digest(salad.stages.encode, salad.speech.encoders.logmel)
    assert code_digest(salad.stages.encode, backend=logmel) != code_digest(salad.stages.encode, salad.speech.encoders.mimi)


def test_a_store_with_no_usable_document_or_too_many_skips_fails_with_counts_and_reasons(tmp_path):
    from salad.storage.store import TooManySkipped, check_skips

    ok = build_store(ToyJob(10, bad={3}), tmp_path / "ok", "fp", shard_docs=5)
    check_skips(ok, 0.1, "toy")  # 1 of 10 skipped: at the limit, passes
    with pytest.raises(TooManySkipped, match=r"toy: 1 skipped, more than max_skip_fraction 0.05 .*1 x bad document 3"):
        check_skips(ok, 0.05, "toy")
    empty = build_store(ToyJob(4, bad={0, 1, 2, 3}), tmp_path / "empty", "fp", shard_docs=5)
    with pytest.raises(TooManySkipped, match=r"toy: no usable document \(4 of 4 skipped, first 'doc000'\).*hint"):
        check_skips(empty, 1.0, "toy", hint="hint")
    check_skips(build_store(ToyJob(0), tmp_path / "none", "fp"), 0.0, "toy")  # no input: nothing to complain of


def test_a_voice_that_cannot_be_built_fails_the_stage_instead_of_skipping_documents():
    from salad.speech.synthesis import SynthesisJob
    from salad.storage.store import CannotBuild

    job = SynthesisJob(tts=EspeakTTS(), records=[{"id": "a", "text": "Hello there.", "voice": "xx-nowhere",
                                                 "rate": 175}])
    with pytest.raises(CannotBuild, match="voice 'xx-nowhere' at 175 wpm cannot be built"):
        job.run(0)
