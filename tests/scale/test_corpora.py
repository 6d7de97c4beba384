"""Paper-scale corpus ingestion through `datasets`, run offline on small local files of the real schemas."""

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
import soundfile

from salad.scale.corpora import CorpusSource, KNOWN_SOURCES, fetch_text, fetch_webdataset_speech, read_parts, \
    stream_documents
from salad.speech.natural import iter_natural, new_stats
from salad.speech.align import make_aligner
from salad.speech.tts import EspeakTTS


@pytest.fixture()
def fineweb_like(tmp_path):
    """Two parquet files with FineWeb-Edu's columns (text, id, dump, url, score, ...)."""
    paths = []
    for f in range(2):
        rows = [{"text": f"Document {f}-{i} about photosynthesis and light." if i != 3 else "  ",
                 "id": f"<urn:uuid:{f}-{i}>", "dump": "CC-MAIN-2024-10", "url": f"https://example.org/{f}/{i}",
                 "language": "en", "score": 3.2, "int_score": 3, "token_count": 9} for i in range(7)]
        path = tmp_path / f"train-{f:05d}.parquet"
        pd.DataFrame(rows).to_parquet(path)
        paths.append(str(path))
    return CorpusSource("parquet", data_files=tuple(paths))


def test_stream_drops_empty_texts_and_keeps_ids(fineweb_like):
    docs = list(stream_documents(fineweb_like))
    assert len(docs) == 12 and docs[0] == {"id": "<urn:uuid:0-0>", "text": "Document 0-0 about photosynthesis and light."}
    assert list(stream_documents(fineweb_like, skip=3))[0]["id"] == "<urn:uuid:0-4>"  # example 3 is empty


def test_ranks_split_the_stream_without_overlap(fineweb_like):
    shares = [[d["id"] for d in stream_documents(fineweb_like, rank=r, world_size=2)] for r in range(2)]
    everything = [d["id"] for d in stream_documents(fineweb_like)]
    assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == sorted(everything)


def test_fetch_writes_parts_and_resumes_after_a_kill(fineweb_like, tmp_path):
    out = tmp_path / "web"
    first = fetch_text(fineweb_like, out, docs_per_part=4, max_documents=5)
    assert first["documents"] == 5 and [d["id"] for d in read_parts(out)][:2] == ["<urn:uuid:0-0>", "<urn:uuid:0-1>"]
    # a rerun without the cap goes on from the committed parts: nothing duplicated, nothing lost
    second = fetch_text(fineweb_like, out, docs_per_part=4)
    ids = [d["id"] for d in read_parts(out)]
    assert second["documents"] == 12 and len(ids) == len(set(ids)) == 12
    assert ids == [d["id"] for d in stream_documents(fineweb_like)]


def test_a_missing_text_field_names_the_example(fineweb_like):
    bad = CorpusSource("parquet", data_files=fineweb_like.data_files, text_field="content")
    with pytest.raises(ValueError, match="no field 'content'"):
        next(stream_documents(bad))


def test_hub_sources_fail_offline_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="fineweb-edu.*local files"):
        next(stream_documents(KNOWN_SOURCES["fineweb-edu-10bt"]))


@pytest.fixture()
def emilia_like(tmp_path):
    """A webdataset tar in Emilia's layout: <key>.mp3 + <key>.json {id, text, duration, speaker, language}."""
    texts = ["The garden was quiet in the early morning.", "She counted twelve boats on the river."]
    path = tmp_path / "EN-B000000.tar"
    with tarfile.open(path, "w") as tar:
        for k, text in enumerate(texts + ["broken"]):
            key = f"EN_B00000_S0000{k}_W00000{k}"
            if text == "broken":
                audio = b"not audio at all"
            else:
                speech = EspeakTTS(voice="en-gb-x-rp").synthesize(text)
                buf = io.BytesIO()
                soundfile.write(buf, speech.audio, speech.sample_rate, format="FLAC")
                audio = buf.getvalue()
            meta = json.dumps({"id": key, "text": text, "duration": 2.0, "speaker": "EN_B00000_S0000",
                               "language": "en"}).encode()
            for name, data in ((f"{key}.flac", audio), (f"{key}.json", meta)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return CorpusSource("webdataset", data_files=(str(path),), id_field=None)


def test_webdataset_speech_becomes_a_manifest_that_natural_ingests(emilia_like, tmp_path):
    out = tmp_path / "emilia"
    stats = fetch_webdataset_speech(emilia_like, out, audio_key="flac", docs_per_part=2)
    assert stats["documents"] == 2 and stats["skipped"] == 1 and stats["parts"] == 2
    again = fetch_webdataset_speech(emilia_like, out, audio_key="flac", docs_per_part=2)
    assert again["documents"] == 2  # everything was committed: nothing fetched twice
    aligner = make_aligner("dtw")
    records = []
    for part in sorted(out.glob("part-*.jsonl")):
        nat = new_stats(part)
        records += [r for r, audio in iter_natural(part, aligner, stats=nat, progress=False)]
    assert [r["text"] for r in records] == ["The garden was quiet in the early morning.",
                                            "She counted twelve boats on the river."]
    assert all(len(r["words"]) == len(r["text"].split()) and r["sample_rate"] == 24000 for r in records)
