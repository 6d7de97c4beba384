"""Text-to-speech with word timestamps, from the espeak-ng C library (PyPI `espeakng-loader`).

Why espeak-ng: the offline world needs a voice that installs from PyPI, runs on one CPU core hundreds of times faster
than real time, and reports *where each word is* in its audio, because interleaving (docs/design.md §3) cuts speech spans at
word boundaries. espeak-ng's library API reports WORD events (audio time in ms, 1-based character position in the
input) alongside the audio, so word times come from the synthesizer itself rather than from a forced aligner.

How a word gets its time
------------------------
The input is split into whitespace-separated words. A word is *speakable* when it holds at least one letter or digit
(`str.isalnum`); each speakable word gets exactly one `WordTime`, whose character span is exactly that word.

1. Every WORD event is mapped to the word holding its character position (positions that fall on whitespace belong
   to the word before: espeak puts the second half of a symbol's expansion, e.g. "÷" -> "divided | by", one
   character after the symbol). A word with several events (numbers: "1984" -> "nineteen | eighty | four") takes
   the union of their intervals.
2. An event's interval runs from its time to the next WORD or END event (END closes clauses and sentences).
3. Words that espeak merges into a neighbour's event ("of the" is announced as one event at "of") get no event of
   their own: they share the interval of the last word with an event before them (the first one, for words before
   any event), split in proportion to their letter and digit counts.
4. Words without letters or digits ("—", "&", "😀") get no `WordTime`. espeak may still speak them ("&" -> "and",
   emoji names); that audio is counted with the preceding speakable word (with the following one at the very start
   of a text), so that no speech falls between words.
5. Trailing silence (clause and sentence pauses, which espeak places at the end of a word's interval) is trimmed from
   each word's end; a word always keeps end > start. Spans are therefore ordered, non-overlapping and inside the
   audio.

Zero-length WORD events: espeak reports a word glued to an em dash ("counterparts—and") by an event of length 0 at
the right position and time. Such events carry no character span but are still used as word-start anchors;
dropping them would give that word's audio to the word before.

Scripts: the voices meant here read Latin-script text. Text without any Latin letter or ASCII digit (e.g. Chinese)
is rejected with a ValueError, because an English voice would only spell out character names. Non-Latin words inside
otherwise Latin text are accepted and read as espeak reads them (character names, letter by letter); they get
`WordTime`s like any other word.

Determinism and global state
----------------------------
The library keeps static state that `espeak_Initialize` does not reset (e.g. the phase of its pitch "flutter"), so
the same text synthesized twice in one process gives slightly different audio and times. Each `synthesize` call
therefore loads a private copy of the shared library (copied once per process, so that no other user of
espeakng-loader in the process can keep it mapped), initialises it, synthesizes, and unloads it: every call starts
from the library's pristine state and the output depends only on (text, voice, rate, sample_rate). This costs about
5 ms per call. A process-wide lock serialises calls, because the library and its callback are global.

Audio: espeak produces 22.05 kHz int16; it is resampled with `scipy.signal.resample_poly` (zero-phase, so the word
times stay valid; `sphn.resample` would delay the audio by ~23 ms). Long documents are synthesized in one call:
espeak splits clauses itself and its event positions and times stay exact over thousands of words.
"""

from __future__ import annotations

import _ctypes
import atexit
import bisect
import ctypes
import math
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Optional

import numpy as np
from scipy.signal import resample_poly

if TYPE_CHECKING:
    from salad.config import SynthesizeConfig

__all__ = ["WordTime", "PhonemeTime", "Speech", "EspeakTTS", "check_text", "is_latin_or_digit", "word_weight", "MIN_WORD_SECONDS"]

ESPEAK_SAMPLE_RATE = 22050

# speak_lib.h (API revision 12, espeak-ng 1.52): enum values and the espeak_EVENT layout.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_espeakCHARS_UTF8 = 1
_espeakRATE = 1
_espeakINITIALIZE_DONT_EXIT = 0x8000  # without it, missing data makes the library call exit()
_EE_OK = 0
_EV_LIST_TERMINATED = 0
_EV_WORD = 1
_EV_END = 5
_EV_MSG_TERMINATED = 6
_EV_PHONEME = 7
_espeakINITIALIZE_PHONEME_EVENTS = 0x0001
_RATE_MIN, _RATE_MAX = 80, 450  # espeakRATE_MINIMUM / _MAXIMUM: outside them espeak silently clamps

# |amplitude| above which a 22.05 kHz int16 sample counts as sound when trimming pauses: espeak writes exact zeros
# in pauses, so anything clearly above rounding noise (-60 dBFS) is speech.
_SILENCE_THRESHOLD = 32
MIN_WORD_SECONDS = 0.01  # floor for a word whose whole interval is silent, so that end > start still holds


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters (code points) of the UTF-8 input
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this message's audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class WordTime:
    """One word of the input and where it is spoken.

    `word == text[char_start:char_end]`; `start`/`end` are seconds in the returned audio.
    """

    word: str
    char_start: int
    char_end: int
    start: float
    end: float


@dataclass(frozen=True)
class PhonemeTime:
    """One phoneme espeak-ng spoke: its mnemonic (espeak's phoneme name, with stress marks, e.g. "'a", "@2", and
    "_" / "_:" for pauses) and the time it starts, in seconds of the returned audio. It lasts until the next one."""

    name: str
    start: float


@dataclass
class Speech:
    """Synthesized audio (float32 mono in [-1, 1]), the time span of every speakable word and, when asked for, the
    phonemes in the order spoken."""

    audio: np.ndarray
    sample_rate: int
    words: list[WordTime] = field(default_factory=list)
    phonemes: list[PhonemeTime] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


# ---------------------------------------------------------------------------------------------------------------
# The library: one private copy per process, loaded fresh for every synthesis.

_LOCK = threading.Lock()
_private_library: Optional[str] = None
_unload_checked = False


class _Sink:
    """Where the callback puts audio and events of the synthesis in progress."""

    def __init__(self) -> None:
        self.pcm: list[bytes] = []
        self.events: list[tuple[int, int, int, int]] = []  # (type, text_position, length, audio_position)
        self.phonemes: list[tuple[int, str]] = []  # (audio_position, mnemonic): only with phoneme events on
        self.error: Optional[BaseException] = None


_sink: Optional[_Sink] = None


def _on_synth(wav, n_samples, events) -> int:  # called by espeak from inside espeak_Synth
    sink = _sink
    if sink is None:
        return 1
    try:
        if wav and n_samples > 0:
            sink.pcm.append(ctypes.string_at(wav, 2 * n_samples))
        if events:
            i = 0
            while True:
                ev = events[i]
                if ev.type == _EV_LIST_TERMINATED:
                    break
                if ev.type in (_EV_WORD, _EV_END, _EV_MSG_TERMINATED):
                    sink.events.append((ev.type, ev.text_position, ev.length, ev.audio_position))
                elif ev.type == _EV_PHONEME:
                    sink.phonemes.append((ev.audio_position, ev.id.string.decode("ascii", errors="replace")))
                i += 1
        return 0
    except BaseException as e:  # an exception must not cross the C boundary; re-raised after espeak_Synth
        sink.error = e
        return 1  # abort synthesis


_CALLBACK = _SynthCallback(_on_synth)  # module-level: the C library keeps this pointer while loaded


def _library_copy() -> str:
    """Path of this process's private copy of libespeak-ng (made on first use, removed at exit)."""
    global _private_library
    if _private_library is None:
        import espeakng_loader

        src = espeakng_loader.get_library_path()
        folder = tempfile.mkdtemp(prefix="salad-espeak-")
        dst = os.path.join(folder, "libespeak-ng-salad.so")
        shutil.copyfile(src, dst)
        atexit.register(shutil.rmtree, folder, True)
        _private_library = dst
    return _private_library


_NOISE_SEED = 1


def _libc() -> ctypes.CDLL:
    """The C library this process (and so libespeak-ng) links: its rand() state is the one espeak-ng draws from."""
    libc = ctypes.CDLL(None)
    libc.srand.argtypes = [ctypes.c_uint]
    libc.srand.restype = None
    return libc


def _data_path() -> bytes:
    import espeakng_loader

    return os.fsencode(espeakng_loader.get_data_path())


class _Session:
    """A freshly loaded, initialised library with `voice` and `rate` set; unloaded on exit. Hold `_LOCK`."""

    def __init__(self, voice: str, rate: int, phonemes: bool = False) -> None:
        self.voice = voice
        self.rate = rate
        self.phonemes = phonemes
        self.lib: Optional[ctypes.CDLL] = None

    def __enter__(self) -> ctypes.CDLL:
        path = _library_copy()
        lib = ctypes.CDLL(path)
        self.lib = lib
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
            lib.espeak_SetSynthCallback.restype = None
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_SetParameter.restype = ctypes.c_int
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            lib.espeak_Synth.restype = ctypes.c_int
            lib.espeak_Terminate.argtypes = []
            lib.espeak_Terminate.restype = ctypes.c_int

            # buflength 1000 ms: fewer Python callbacks than the 60 ms default; audio and events are unchanged.
            # Phoneme events (when asked for) only add events to the callback: the audio and word events are the same.
            options = _espeakINITIALIZE_DONT_EXIT | (_espeakINITIALIZE_PHONEME_EVENTS if self.phonemes else 0)
            rate_hz = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 1000, _data_path(), options)
            if rate_hz != ESPEAK_SAMPLE_RATE:
                raise RuntimeError(f"espeak_Initialize returned {rate_hz}, expected sample rate {ESPEAK_SAMPLE_RATE} "
                                   f"(data path {_data_path().decode(errors='replace')})")
            lib.espeak_SetSynthCallback(_CALLBACK)
            # Voices with breath noise (e.g. the +f3 variant) draw from espeak-ng's own generator, which
            # espeak_Initialize seeds from the clock, and from the C library's rand(): both are seeded here, so an
            # utterance depends only on its text, voice and rate.
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed.restype = None
            lib.espeak_ng_SetRandSeed(_NOISE_SEED)
            _libc().srand(_NOISE_SEED)
            if lib.espeak_SetVoiceByName(self.voice.encode()) != _EE_OK:
                raise ValueError(f"espeak-ng has no voice {self.voice!r}")
            if lib.espeak_SetParameter(_espeakRATE, self.rate, 0) != _EE_OK:
                raise RuntimeError(f"espeak_SetParameter(rate={self.rate}) failed")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return lib

    def __exit__(self, *exc) -> None:
        global _unload_checked
        lib, self.lib = self.lib, None
        if lib is None:
            return
        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)
        if not _unload_checked:
            _unload_checked = True
            _check_unloaded(_library_copy())


def _check_unloaded(path: str) -> None:
    """Fail loudly if dlclose kept the library mapped: its static state would then leak between calls."""
    try:
        with open("/proc/self/maps") as f:
            still_mapped = path in f.read()
    except OSError:  # not Linux: nothing to check against
        return
    if still_mapped:
        raise RuntimeError("libespeak-ng stayed loaded after dlclose; synthesis would not be deterministic")


def _synthesize_raw(text: str, voice: str, rate: int, phonemes: bool = False) -> tuple[np.ndarray, _Sink]:
    """int16 audio at 22.05 kHz and the sink holding the WORD/END (and PHONEME) events of `text`, from a pristine
    library."""
    global _sink
    data = text.encode("utf-8")
    with _LOCK:
        with _Session(voice, rate, phonemes) as lib:
            sink = _Sink()
            _sink = sink
            try:
                ret = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _espeakCHARS_UTF8, None, None)
            finally:
                _sink = None
    if sink.error is not None:
        raise sink.error
    if ret != _EE_OK:
        raise RuntimeError(f"espeak_Synth failed with code {ret}")
    pcm = np.frombuffer(b"".join(sink.pcm), dtype=np.int16)
    return pcm, sink


# ---------------------------------------------------------------------------------------------------------------
# From events to word times.

_WORD_RE = re.compile(r"\S+")
# Control characters would end the C string early (NUL) or be read as markup; replaced one-for-one by spaces so that
# every character position stays the same.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_latin_or_digit(ch: str) -> bool:
    """Whether `ch` is an ASCII digit or a Latin-script letter: text without any is rejected (module docstring)."""
    if ch in "0123456789":
        return True
    return ch.isalpha() and "LATIN" in unicodedata.name(ch, "")


def word_weight(word: str) -> int:
    """A word's share when words without times of their own split one interval: its letters and digits (at least 1)."""
    return max(1, sum(ch.isalnum() for ch in word))


def _align(text: str, pcm: np.ndarray, events: list[tuple[int, int, int, int]]) -> list[tuple[int, float, float]]:
    """(word index, start s, end s) for every speakable word; see the module docstring for the rules."""
    tokens = [(m.start(), m.end()) for m in _WORD_RE.finditer(text)]
    starts = [s for s, _ in tokens]
    speakable = [any(ch.isalnum() for ch in text[s:e]) for s, e in tokens]
    n_audio = len(pcm)
    audio_ms = n_audio * 1000.0 / ESPEAK_SAMPLE_RATE

    # Event times in ms, made non-decreasing and clipped to the audio (they already are; this guards the invariants).
    marks: list[tuple[int, float, int]] = []  # (type, ms, token index or -1)
    last_ms, last_tok = 0.0, 0
    for etype, pos, _length, ms in events:
        t = min(max(float(ms), last_ms), audio_ms)
        last_ms = t
        if etype == _EV_WORD:
            # Largest token start <= position (0-based): positions on whitespace go to the word before.
            i = bisect.bisect_right(starts, pos - 1) - 1
            tok = max(i, last_tok, 0)
            last_tok = tok
            marks.append((etype, t, tok))
        elif etype in (_EV_END, _EV_MSG_TERMINATED):
            marks.append((etype, t, -1))

    # Interval of each WORD event: until the next mark (WORD or END), or the end of the audio.
    span: dict[int, list[float]] = {}  # token -> [start ms, end ms]
    for k, (etype, t, tok) in enumerate(marks):
        if etype != _EV_WORD:
            continue
        t_end = marks[k + 1][1] if k + 1 < len(marks) else audio_ms
        if tok in span:
            span[tok][1] = max(span[tok][1], t_end)
        else:
            span[tok] = [t, t_end]
    anchors = sorted(tok for tok, (a, b) in span.items() if b > a)  # tokens with audio of their own
    if not anchors:
        raise ValueError(f"espeak-ng produced no word events for the text {text[:80]!r}")

    # Groups: an anchor plus the words after it up to the next anchor (the words before the first anchor join it).
    groups: list[tuple[list[int], float, float]] = []
    for g, tok in enumerate(anchors):
        first = 0 if g == 0 else tok
        last = anchors[g + 1] if g + 1 < len(anchors) else len(tokens)
        members = [i for i in range(first, last) if speakable[i]]
        groups.append((members, span[tok][0], span[tok][1]))

    # A group without a speakable word (e.g. "&" spoken as "and") gives its audio to the previous group, or at the
    # start of the text to the next one.
    merged: list[list] = []
    pending_start: Optional[float] = None
    for members, a, b in groups:
        if members:
            if pending_start is not None:
                a, pending_start = pending_start, None
            merged.append([members, a, b])
        elif merged:
            merged[-1][2] = b
        elif pending_start is None:
            pending_start = a

    loud = (pcm > _SILENCE_THRESHOLD) | (pcm < -_SILENCE_THRESHOLD)

    out: list[tuple[int, float, float]] = []
    for members, a_ms, b_ms in merged:
        a = int(round(a_ms * ESPEAK_SAMPLE_RATE / 1000.0))
        b = int(round(b_ms * ESPEAK_SAMPLE_RATE / 1000.0))
        b = min(max(b, a), n_audio)
        tail = loud[a:b][::-1]
        b_trim = b - int(np.argmax(tail)) if tail.any() else a  # argmax stops at the first sound from the end
        start_s = a / ESPEAK_SAMPLE_RATE
        end_s = b_trim / ESPEAK_SAMPLE_RATE
        if end_s <= start_s:  # a silent interval: keep a short span, never past the interval's own end
            end_s = min(start_s + MIN_WORD_SECONDS, max(b, a + 1) / ESPEAK_SAMPLE_RATE)
        weights = np.cumsum([0] + [word_weight(text[tokens[i][0]:tokens[i][1]]) for i in members], dtype=np.float64)
        bounds = start_s + (end_s - start_s) * weights / weights[-1]
        bounds[0], bounds[-1] = start_s, end_s  # exact, so that rounding cannot make neighbours overlap
        for j, i in enumerate(members):
            out.append((i, float(bounds[j]), float(bounds[j + 1])))
    return out


def check_text(text: str) -> list[re.Match]:
    """The whitespace-separated words of `text`, after the input checks every TTS backend shares.

    Raises ValueError for text that is empty, has no word with a letter or digit, or has no Latin-script letter or
    digit (an English voice would only spell out character names).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("cannot synthesize empty text")
    words = list(_WORD_RE.finditer(text))
    if not any(any(ch.isalnum() for ch in m.group()) for m in words):
        raise ValueError(f"text has no speakable word (a word needs a letter or digit): {text[:80]!r}")
    if not any(is_latin_or_digit(ch) for ch in text):
        raise ValueError(f"text has no Latin-script letter or digit; an English voice would only spell out "
                         f"character names: {text[:80]!r}")
    return words


# ---------------------------------------------------------------------------------------------------------------


class EspeakTTS:
    """espeak-ng voice `voice` at `rate` words per minute, resampled to `sample_rate` Hz."""

    def __init__(self, voice: str = "en-us", rate: int = 175, sample_rate: int = 24000) -> None:
        if not isinstance(rate, (int, np.integer)) or not _RATE_MIN <= rate <= _RATE_MAX:
            raise ValueError(f"rate must be an integer in [{_RATE_MIN}, {_RATE_MAX}] words per minute, got {rate!r}")
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.voice = voice
        self.rate = int(rate)
        self.sample_rate = int(sample_rate)
        ratio = Fraction(self.sample_rate, ESPEAK_SAMPLE_RATE)
        self._up, self._down = ratio.numerator, ratio.denominator  # 24 kHz: 160 / 147
        with _LOCK:
            with _Session(self.voice, self.rate):  # fail now, not on the first document, for an unknown voice
                pass

    @classmethod
    def from_config(cls, cfg: SynthesizeConfig) -> EspeakTTS:
        """The fixed voice of `cfg`: espeak-ng `voice` at `rate`."""
        return cls(voice=cfg.voice, rate=cfg.rate, sample_rate=cfg.sample_rate)

    def __repr__(self) -> str:
        return f"EspeakTTS(voice={self.voice!r}, rate={self.rate}, sample_rate={self.sample_rate})"

    def synthesize(self, text: str, phonemes: bool = False) -> Speech:
        """Speak `text`; return its audio and one `WordTime` per speakable word (see the module docstring), and with
        `phonemes` every phoneme espeak-ng spoke with its start time (the audio and words are the same either way).

        Raises ValueError for text that is empty, has no word with a letter or digit, or has no Latin-script word.
        """
        words = check_text(text)

        pcm, sink = _synthesize_raw(_CONTROL_RE.sub(" ", text), self.voice, self.rate, phonemes)
        if len(pcm) == 0:
            raise ValueError(f"espeak-ng produced no audio for the text {text[:80]!r}")
        aligned = _align(text, pcm, sink.events)

        audio = pcm.astype(np.float32) / 32768.0
        if (self._up, self._down) != (1, 1):
            audio = resample_poly(audio, self._up, self._down).astype(np.float32)
        np.clip(audio, -1.0, 1.0, out=audio)
        duration = len(audio) / self.sample_rate

        result = []
        for i, start, end in aligned:
            m = words[i]
            end = min(end, duration)
            start = min(start, math.nextafter(end, -math.inf))
            result.append(WordTime(word=m.group(), char_start=m.start(), char_end=m.end(), start=start, end=end))
        spoken = [PhonemeTime(name, min(ms / 1000.0, duration)) for ms, name in sink.phonemes]
        return Speech(audio=audio, sample_rate=self.sample_rate, words=result, phonemes=spoken)
