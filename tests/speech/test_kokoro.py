"""Properties of the Kokoro TTS (salad.speech.kokoro), on a random-weight stand-in of the real architecture.

The stand-in (salad.scale.kokoro_standin) runs the real kokoro/misaki code path offline: misaki's G2P on a rule-based
spaCy pipeline, KPipeline's chunking and timestamps, KModel. Its audio is noise, so these tests check the word
contract (shared with salad.speech.tts.EspeakTTS), chunk offsets, determinism, pickling and the errors, not the voice.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from salad.config import ConfigError, SynthesizeConfig
from salad.scale.kokoro_standin import build_kokoro_standin
from salad.speech.synthesis import make_tts, synthesize_corpus
from salad.speech.tts import EspeakTTS
from conftest import SENTENCES, check_speech, speakable_spans
from salad.speech.kokoro import KokoroTTS

TEXTS = {
    "prose": "It was a bright cold day in April, and the clocks were striking thirteen. The old harbour town woke "
             "slowly: fishermen hauled their nets onto the quay.",
    "punctuation": 'Wait... what?! "Quoted" (parenthetical) words; semi-colons: yes — and dashes – too. Dr. Smith\'s.',
    "numbers": "In 1984 the price rose 3.5 times, from 12,000 to 42,000 units, on 1/2/2020 at 10:30 a.m.",
    "symbols": "Salt & pepper cost 50% more at AT&T, x² + y² = z³, and $5 or €20 — 😀 the end.",
    "contractions": "I don't think we'll go; they're sure it isn't raining, and she'd've known. Rock'n'roll!",
    "sentences": "Is this the end? Not quite. There is more to tell! She wrote: \"It works.\" Then she left.",
    "lines and whitespace": "\n\n  Leading\tand trailing\r\nwhitespace,\n\nnon\u00a0breaking  too.  \n",
    "glued dashes": "Spoken text-based counterparts—and even cascaded pipelines—on language tasks.",
    "mixed scripts": "Greek α and β, café naïve Ünïcödé, and Chinese 你好 inside English.",
}

LONG = " ".join(SENTENCES * 2)  # ~160 words, ~950 phonemes: two Kokoro chunks


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small machine shared with other jobs, torch's thread pool mostly waits for its
    descheduled peer (10-30x slower here); one thread runs the stand-in at ~10x real time regardless."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    return build_kokoro_standin(tmp_path_factory.mktemp("kokoro"))


@pytest.fixture(scope="module")
def tts(files) -> KokoroTTS:
    return KokoroTTS(**files)


@pytest.mark.parametrize("name", list(TEXTS))
def test_every_speakable_word_gets_one_ordered_span(tts: KokoroTTS, name: str) -> None:
    check_speech(TEXTS[name], tts.synthesize(TEXTS[name]))


def test_chunk_offsets_keep_times_increasing(tts: KokoroTTS) -> None:
    engine = tts._load()
    _, tokens = engine.g2p(LONG, preprocess=False)
    assert len(list(engine.pipeline.en_tokenize(tokens))) >= 2  # the text really spans several chunks
    speech = tts.synthesize(LONG)
    check_speech(LONG, speech)  # times restart in every chunk: without the offsets the order check would fail
    assert speech.duration - speech.words[-1].end < 0.5  # the last word ends where the audio ends
    assert speech.words[0].start < 0.5


def test_pauses_fall_between_words(tts: KokoroTTS) -> None:
    speech = tts.synthesize("The first sentence ends here. Then a second one follows.")
    here, then = speech.words[4], speech.words[5]
    assert (here.word, then.word) == ("here.", "Then")
    assert then.start - here.end >= 0.02  # the "." pause (>= one 25 ms frame) is in neither word


def test_symbol_audio_goes_to_the_preceding_word(tts: KokoroTTS) -> None:
    salt, pepper = tts.synthesize("Salt & pepper.").words[:2]  # "&" is read "and" but is not a word of its own
    assert (salt.word, pepper.word) == ("Salt", "pepper.")
    assert pepper.start - salt.end < 1e-6  # no speech left between the two words


def test_deterministic(tts: KokoroTTS, files: dict) -> None:
    text = TEXTS["numbers"]
    state = torch.random.get_rng_state()
    first = tts.synthesize(text)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is left alone
    tts.synthesize(TEXTS["prose"])
    second = KokoroTTS(**files).synthesize(text)
    assert np.array_equal(first.audio, second.audio)
    assert first.words == second.words


def test_pickle_round_trip(tts: KokoroTTS) -> None:
    data = pickle.dumps(tts)
    assert len(data) < 10_000  # paths and settings, not the model
    clone = pickle.loads(data)
    assert repr(clone) == repr(tts)
    a, b = tts.synthesize(TEXTS["sentences"]), clone.synthesize(TEXTS["sentences"])
    assert np.array_equal(a.audio, b.audio) and a.words == b.words


def test_repr_names_files_and_their_content(tts: KokoroTTS, files: dict, tmp_path: Path) -> None:
    text = repr(tts)
    for key in ("model", "config", "voice", "spacy_model"):
        assert Path(files[key]).name + "#" in text
    assert repr(KokoroTTS(**files)) == text
    other_voice = tmp_path / Path(files["voice"]).name
    torch.save(torch.load(files["voice"]) * 1.5, other_voice)
    assert repr(KokoroTTS(**{**files, "voice": str(other_voice)})) != text


def test_resampled_output_keeps_word_times(tts: KokoroTTS, files: dict) -> None:
    native = tts.synthesize(TEXTS["prose"])
    resampled = KokoroTTS(**files, sample_rate=16000).synthesize(TEXTS["prose"])
    check_speech(TEXTS["prose"], resampled, sample_rate=16000)
    assert len(resampled.audio) == pytest.approx(len(native.audio) * 2 / 3, abs=2)
    times = [t for w in native.words for t in (w.start, w.end)]
    assert [t for w in resampled.words for t in (w.start, w.end)] == pytest.approx(times, abs=1e-3)


@pytest.mark.parametrize("key, named", [("model", "kokoro-v1_0.pth"), ("config", "config.json"),
                                        ("voice", "af_heart.pt"), ("spacy_model", "en_core_web_sm")])
def test_missing_file_is_named(files: dict, tmp_path: Path, key: str, named: str) -> None:
    missing = tmp_path / f"no-{key}"
    with pytest.raises(FileNotFoundError) as info:
        KokoroTTS(**{**files, key: str(missing)})
    assert str(missing) in str(info.value) and named in str(info.value)
    if key != "spacy_model":
        assert "hexgrad/Kokoro-82M" in str(info.value)


def test_spacy_model_may_be_an_unpacked_package(files: dict, tmp_path: Path) -> None:
    package = tmp_path / "en_core_web_sm"
    shutil.copytree(files["spacy_model"], package / "en_core_web_sm-3.8.0")
    tts = KokoroTTS(**{**files, "spacy_model": str(package)})
    assert tts.spacy_path == package / "en_core_web_sm-3.8.0"


def test_missing_spacy_package_is_named(files: dict) -> None:
    import spacy

    if spacy.util.is_package("en_core_web_sm"):
        pytest.skip("en_core_web_sm is installed here")
    with pytest.raises(FileNotFoundError, match="en_core_web_sm.*not installed"):
        KokoroTTS(**{**files, "spacy_model": None})


def test_checkpoint_that_does_not_fit_the_config(files: dict, tmp_path: Path) -> None:
    config = json.loads(Path(files["config"]).read_text(encoding="utf-8"))
    config["n_layer"] = 2
    other = tmp_path / "config.json"
    other.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="does not fit"):
        KokoroTTS(**{**files, "config": str(other)})


def test_voice_of_the_wrong_shape(files: dict, tmp_path: Path) -> None:
    voice = tmp_path / "short.pt"
    torch.save(torch.zeros(100, 1, 256), voice)
    with pytest.raises(ValueError, match=r"voice pack is a float tensor \[>= 510, 1, 256\]"):
        KokoroTTS(**{**files, "voice": str(voice)})


@pytest.mark.parametrize("text", ["", "   \n\t ", "— … ¿ ¡ 😀 &", "!!!"])
def test_nothing_to_say_raises(tts: KokoroTTS, text: str) -> None:
    with pytest.raises(ValueError):
        tts.synthesize(text)


def test_non_latin_text_raises(tts: KokoroTTS) -> None:
    with pytest.raises(ValueError, match="Latin"):
        tts.synthesize("你好，世界。")
    with pytest.raises(TypeError):
        tts.synthesize(None)  # type: ignore[arg-type]


def test_bad_settings(files: dict) -> None:
    with pytest.raises(ValueError, match="lang_code"):
        KokoroTTS(**files, lang_code="j")
    with pytest.raises(ValueError, match="speed"):
        KokoroTTS(**files, speed=0)


def test_make_tts_and_config(files: dict) -> None:
    assert isinstance(make_tts(SynthesizeConfig()), EspeakTTS)
    cfg = SynthesizeConfig(tts="kokoro", kokoro_model=files["model"], kokoro_config=files["config"],
                           kokoro_voice=files["voice"], kokoro_spacy_model=files["spacy_model"], kokoro_speed=1.2)
    tts = make_tts(cfg)
    assert isinstance(tts, KokoroTTS) and tts.speed == 1.2 and tts.sample_rate == 24000
    with pytest.raises(ConfigError, match=r"synthesize\.kokoro_model.*hexgrad/Kokoro-82M"):
        SynthesizeConfig(tts="kokoro", kokoro_config=files["config"], kokoro_voice=files["voice"])
    with pytest.raises(ConfigError, match=r"synthesize\.tts"):
        SynthesizeConfig(tts="festival")


def test_synthesize_corpus_records_the_voice(tts: KokoroTTS, tmp_path: Path) -> None:
    records = [{"id": "a", "text": TEXTS["sentences"]}, {"id": "b", "text": "!!!"}]
    stats = synthesize_corpus(tts, records, tmp_path / "store", "toy", workers=1, rank=0, world_size=1)
    assert stats["documents"] == 1 and stats["skipped"] == 1
    index = [json.loads(line) for line in (tmp_path / "store" / "index.jsonl").read_text().splitlines()]
    assert index[0]["voice"] == "af_standin" and index[0]["sample_rate"] == 24000
    direct = tts.synthesize(TEXTS["sentences"])
    assert [w[:3] for w in index[0]["words"]] == [[w.word, w.char_start, w.char_end] for w in direct.words]


def test_standin_is_reproducible(files: dict, tmp_path: Path) -> None:
    again = build_kokoro_standin(tmp_path / "again")
    a, b = torch.load(files["model"]), torch.load(again["model"])
    assert all(torch.equal(a[k][n], b[k][n]) for k in a for n in a[k])
    assert torch.equal(torch.load(files["voice"]), torch.load(again["voice"]))
    shutil.rmtree(tmp_path / "again")
