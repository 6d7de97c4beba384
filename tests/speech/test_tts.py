"""Properties of the espeak-ng TTS and its word timestamps (salad.speech.tts)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from salad.speech.tts import EspeakTTS, Speech
from conftest import SENTENCES, check_speech, speakable_spans

PROSE = (
    "It was a bright cold day in April, and the clocks were striking thirteen. The old harbour town woke slowly: "
    "fishermen hauled their nets onto the quay, a baker opened his shutters, and children ran down the hill toward "
    "the school with their satchels bouncing behind them."
)

TEXTS = {
    "prose": PROSE,
    "punctuation": 'Wait... what?! "Quoted" (parenthetical) words; semi-colons: yes — and dashes – too. Dr. Smith\'s.',
    "numbers": "In 1984 the price rose 3.5 times, from 12,000 to 42,000 units, on 1/2/2020 at 10:30 a.m.",
    "symbols": "Salt & pepper cost 50% more at AT&T, x² + y² = z³, and $5 or €20 — 😀 the end.",
    "merges": "The history of the world is the story of the people of the land and of the sea.",
    "glued dashes": "Spoken text-based counterparts—and even cascaded pipelines—on language tasks.",
    "whitespace": "\n\n  Leading\tand trailing\r\nwhitespace, non\u00a0breaking too.  \n",
    "mixed scripts": "Greek α and β, café naïve Ünïcödé, and Chinese 你好 inside English.",
}



def long_text(n_words: int) -> str:
    out, i = [], 0
    while sum(len(s.split()) for s in out) < n_words:
        out.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(out)


@pytest.fixture(scope="module")
def tts() -> EspeakTTS:
    return EspeakTTS()


@pytest.mark.parametrize("name", list(TEXTS))
def test_every_speakable_word_gets_one_ordered_span(tts: EspeakTTS, name: str) -> None:
    check_speech(TEXTS[name], tts.synthesize(TEXTS[name]))


def test_long_document_in_one_piece(tts: EspeakTTS) -> None:
    text = long_text(2000)
    speech = tts.synthesize(text)
    check_speech(text, speech)
    assert speech.duration > 500  # ~2000 words at 175 wpm, i.e. the whole document was spoken
    # The last word ends where the audio ends: no drift between event times and samples over ten minutes.
    assert speech.duration - speech.words[-1].end < 0.1


def test_words_cover_the_speech(tts: EspeakTTS) -> None:
    speech = tts.synthesize(PROSE)
    assert speech.words[0].start < 0.05
    assert speech.duration - speech.words[-1].end < 0.05
    for w in speech.words:  # every span holds sound
        seg = speech.audio[int(w.start * speech.sample_rate):int(w.end * speech.sample_rate)]
        assert np.abs(seg).max() > 0.05, w


def test_sentence_pause_is_trimmed_from_the_word_before(tts: EspeakTTS) -> None:
    speech = tts.synthesize("The first sentence ends here. Then a second one follows.")
    here, then = speech.words[4], speech.words[5]
    assert (here.word, then.word) == ("here.", "Then")
    assert then.start - here.end > 0.1  # the pause lies between the words, not inside "here."
    gap = speech.audio[int(here.end * speech.sample_rate) + 48:int(then.start * speech.sample_rate) - 48]
    assert np.abs(gap).max() < 0.01


def test_merged_function_words_split_by_letters(tts: EspeakTTS) -> None:
    speech = tts.synthesize("The history of the world.")
    by_word = {w.word: w for w in speech.words[1:4]}
    of, the = by_word["of"], by_word["the"]
    assert of.end == pytest.approx(the.start)  # one espeak event, split in two
    assert (the.end - the.start) / (of.end - of.start) == pytest.approx(3 / 2, rel=1e-6)


def test_symbol_audio_goes_to_the_preceding_word(tts: EspeakTTS) -> None:
    plain = tts.synthesize("Salt pepper.").words[0]
    with_and = tts.synthesize("Salt & pepper.").words[0]  # "&" is spoken "and" but is not a word of its own
    assert with_and.word == "Salt"
    assert (with_and.end - with_and.start) - (plain.end - plain.start) > 0.1


def test_deterministic_across_calls(tts: EspeakTTS) -> None:
    text = TEXTS["numbers"]
    first = tts.synthesize(text)
    tts.synthesize(PROSE)  # espeak keeps static state between calls; it must not leak into the next one
    other = EspeakTTS()
    second = other.synthesize(text)
    assert np.array_equal(first.audio, second.audio)
    assert first.words == second.words


def test_a_voice_with_breath_noise_is_deterministic() -> None:
    """The second voice (en-us+f3) adds breath noise from espeak-ng's generator, which the library seeds from the
    clock, and from the C library's rand(): same text, same bytes, in another second and after other draws."""
    import ctypes
    import time

    voice = EspeakTTS("en-us+f3")
    first = voice.synthesize(PROSE)
    time.sleep(1.1)  # a clock-seeded generator now starts elsewhere
    ctypes.CDLL(None).srand(12345)  # and the C library's generator is somewhere else too
    second = EspeakTTS("en-us+f3").synthesize(PROSE)
    assert first.audio.tobytes() == second.audio.tobytes()
    assert first.words == second.words


def test_thread_safe(tts: EspeakTTS) -> None:
    texts = [TEXTS["prose"], TEXTS["merges"], TEXTS["numbers"], TEXTS["symbols"]]
    serial = [tts.synthesize(t) for t in texts]
    results: dict[int, Speech] = {}

    def work(i: int) -> None:
        results[i] = tts.synthesize(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, s in enumerate(serial):
        assert np.array_equal(results[i].audio, s.audio) and results[i].words == s.words


def test_times_do_not_depend_on_output_rate(tts: EspeakTTS) -> None:
    native = EspeakTTS(sample_rate=22050).synthesize(PROSE)
    resampled = tts.synthesize(PROSE)
    assert native.sample_rate == 22050
    assert len(resampled.audio) == pytest.approx(len(native.audio) * 24000 / 22050, abs=2)
    times = [t for w in native.words for t in (w.start, w.end)]
    assert times == pytest.approx([t for w in resampled.words for t in (w.start, w.end)], abs=1e-9)
    # Zero-phase resampling: the 24 kHz waveform lines up with the 22.05 kHz one (no delay).
    t = np.arange(len(resampled.audio)) / 24000
    back = np.interp(np.arange(len(native.audio)) / 22050, t, resampled.audio)
    assert np.corrcoef(back, native.audio)[0, 1] > 0.95


@pytest.mark.parametrize("text", ["", "   \n\t ", "— … !?", "&", "- -- ---"])
def test_nothing_to_say_raises(tts: EspeakTTS, text: str) -> None:
    with pytest.raises(ValueError, match="empty|no speakable word"):
        tts.synthesize(text)


def test_non_latin_text_raises(tts: EspeakTTS) -> None:
    with pytest.raises(ValueError, match="Latin"):
        tts.synthesize("你好，世界。今天天气很好。")
    with pytest.raises(ValueError, match="Latin"):
        tts.synthesize("Привет, мир")


def test_non_latin_words_inside_latin_text_are_spoken(tts: EspeakTTS) -> None:
    text = "Hello 你好 world"
    speech = tts.synthesize(text)
    assert [w.word for w in speech.words] == ["Hello", "你好", "world"]
    check_speech(text, speech)


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="no voice"):
        EspeakTTS(voice="xx-not-a-voice")
    with pytest.raises(ValueError, match="rate"):
        EspeakTTS(rate=1000)
    with pytest.raises(ValueError, match="sample_rate"):
        EspeakTTS(sample_rate=0)


def test_two_worker_processes_synthesize_the_same_store_as_one(tmp_path) -> None:
    """espeak-ng in spawned worker processes (the sharded synthesize stage with workers: 2) writes the same bytes
    as in this process: each worker builds its own voice, seeded the same way."""
    from salad.speech.synthesis import synthesize_corpus

    records = [{"id": f"d{i}", "text": s} for i, s in enumerate(SENTENCES[:4])]
    stores = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        synthesize_corpus(EspeakTTS(voice="en-us+f3"), records, out, "toy", workers=workers, shard_docs=2, rank=0,
                          world_size=1)
        stores[workers] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert len(stores[1]) > 2 and stores[1] == stores[2]


def test_phoneme_events_leave_audio_and_words_unchanged(tts: EspeakTTS) -> None:
    text = "The cat sat on the mat, and the dog barked at 1984 birds."
    plain, timed = tts.synthesize(text), tts.synthesize(text, phonemes=True)
    assert np.array_equal(plain.audio, timed.audio) and plain.words == timed.words and plain.phonemes == []
    starts = [p.start for p in timed.phonemes]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] <= timed.duration
    names = [p.name for p in timed.phonemes]
    # espeak-ng's mnemonics: "cat" is k 'a t; sentence and clause pauses are "_" phonemes
    assert names[names.index("k"):names.index("k") + 3] == ["k", "'a", "t"]
    assert any(n.startswith("_") for n in names)
