"""Kokoro-82M text-to-speech with word timestamps (the paper's TTS, voice af_heart), from local files only.

The paper synthesizes its speech with Kokoro (hexgrad/Kokoro-82M, voice af_heart). `KokoroTTS` runs it through the
`kokoro` and `misaki` packages exactly as `kokoro.KPipeline` does (misaki's English G2P, KPipeline's chunking into
<= 510 phonemes, `KModel`, KPipeline's per-token timestamps), with every file given as a local path and the same
word contract as `salad.speech.tts.EspeakTTS`.

Files (all required; a missing one is a FileNotFoundError that says where to get it, never a download):

- `model`: the checkpoint `kokoro-v1_0.pth` and `config`: `config.json`, both from the hub repo hexgrad/Kokoro-82M;
- `voice`: a voice pack such as `voices/af_heart.pt` from the same repo (a float tensor [510, 1, 256]);
- `spacy_model`: the spaCy pipeline misaki tags words with: None means the installed package `en_core_web_sm`,
  otherwise the folder of a spaCy pipeline (`nlp.to_disk`), or of an unpacked model package such as
  `en_core_web_sm/` (whose pipeline is its one `en_core_web_sm-3.8.0/` subfolder). en_core_web_sm is not on PyPI;
  its wheel is on github.com/explosion/spacy-models.

Why not `KPipeline('a')`: its constructor always builds `misaki.en.G2P`, which calls `spacy.cli.download` when
`en_core_web_sm` is not an installed package, and `KModel` without `model=` downloads weights. Here misaki's G2P gets
an already loaded spaCy pipeline (a subclass that only replaces `en.G2P.__init__`, misaki 0.9.4), the model is a
`KModel` built from the local config with an empty checkpoint and then loaded *strictly* from the local `.pth`
(KModel's own loader retries with `strict=False`, which would silently leave random weights on a mismatch), and the
pipeline is a `KPipeline` whose constructor only stores these objects; synthesis uses KPipeline's own
`generate_from_tokens`. Like KPipeline, the text is split into lines (`\\n+`), each line is phonemized as a whole.
Whitespace inside a line is collapsed to single spaces, and misaki's inline markup (`[word](/phonemes/)`) is not
interpreted: the text is read as written.

How a word gets its time
------------------------
Words, speakable words, errors and the returned `Speech` are those of `salad.speech.tts` (a word is a whitespace-separated
token; speakable: it holds a letter or digit; each speakable word gets exactly one `WordTime` spanning exactly it).

1. misaki's tokens (spaCy tokens merged back into words, punctuation split off) are mapped to input words by walking
   the text: each non-space character of a token is matched to its next occurrence, so a character misaki drops or
   adds cannot shift the words after it.
2. A token's time is KPipeline's `start_ts`/`end_ts` (from the predicted phoneme durations, 25 ms frames, spaces
   split in half between neighbours) plus the audio length of the chunks before it: timestamps restart in every
   chunk of <= 510 phonemes.
3. A word's interval is the union of its *spoken* tokens (whose phonemes hold a letter); punctuation tokens ("," or
   "—", read as pauses) extend no word, so pauses fall between words. A spoken token of a word without letters or
   digits ("&" -> "and", "%" -> "percent") is counted with the preceding speakable word (the following one at the
   start of the text), as in salad.speech.tts.
4. Speakable words without a timed token of their own (no phonemes, or cut by KPipeline's 510-phoneme truncation)
   share the interval of the last word with one before them (the first one, for words before any), split in
   proportion to their letter and digit counts.
5. Intervals are clipped to the audio; spans are ordered, non-overlapping, 0 <= start < end <= duration.

Determinism
-----------
Kokoro's decoder is not deterministic by itself: iSTFTNet's harmonic source (`kokoro.istftnet.SineGen`) draws random
initial phases for the overtones (`torch.rand`) and adds Gaussian noise (`torch.randn_like`) to the excitation on
every call. Each chunk is therefore synthesized with torch's global generator seeded to a constant (inside
`torch.random.fork_rng`, so the caller's random state is untouched), which also makes a chunk's audio independent of
the chunks before it. Dropout is off (`eval()`); everything else is deterministic on CPU. The audio is bitwise
identical for a given torch thread count; another count changes it by ~1e-6 (floating-point summation order) and in
practice leaves the word times unchanged (they come from durations rounded to whole frames). A process-wide lock
serialises synthesis, because the seeding uses torch's global generator.

Speed: on CPU, torch's intra-op thread pool degrades badly when the cores are shared (synthesis workers, other
jobs): on 2 busy cores one thread per process (`torch.set_num_threads(1)`) was 10-30x faster than the default two.
This class leaves the thread count to the caller.

Output: Kokoro speaks at 24 kHz; another `sample_rate` is reached with `scipy.signal.resample_poly` (zero-phase, so
the word times stay valid). The object pickles as its file paths and settings; a worker process reloads the model on
its first `synthesize`. Its `repr` names the files with a digest of their content (all of small files and folders;
size plus three 4 MiB blocks of files over 64 MiB) and the kokoro and misaki versions, for cache fingerprints.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import importlib.metadata
import math
import os
import re
import tempfile
import threading
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

import numpy as np
from scipy.signal import resample_poly

from salad.speech.tts import Speech, WordTime, check_text, word_weight

if TYPE_CHECKING:
    from salad.config import SynthesizeConfig

__all__ = ["KokoroTTS", "KOKORO_REPO", "KOKORO_SAMPLE_RATE"]

KOKORO_REPO = "hexgrad/Kokoro-82M"
KOKORO_SAMPLE_RATE = 24000
SPACY_PACKAGE = "en_core_web_sm"
_MODULES = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")  # the checkpoint's top-level keys
_MAX_PHONEMES = 510  # KPipeline's chunk limit; the voice pack holds one style per phoneme count
_CHUNK_SEED = 0
_LINE_RE = re.compile(r"[^\n]+")  # KPipeline splits its input on r"\n+"
_ALIGN_WINDOW = 32  # characters searched ahead for a token's next character
_FULL_DIGEST_BYTES = 64 << 20
_DIGEST_BLOCK = 4 << 20

_LOCK = threading.Lock()

_DOWNLOAD = (f"download it once from the Hugging Face repo {KOKORO_REPO}, e.g. `hf download "
             f"{KOKORO_REPO} kokoro-v1_0.pth config.json voices/af_heart.pt --local-dir models/kokoro`")
_SPACY_HOW = (f"install the spaCy package {SPACY_PACKAGE} once (`pip install https://github.com/explosion/spacy-models/"
              f"releases/download/{SPACY_PACKAGE}-3.8.0/{SPACY_PACKAGE}-3.8.0-py3-none-any.whl`; it is not on PyPI) "
              f"or pass spacy_model=<folder of a spaCy pipeline saved with nlp.to_disk>")


# ---------------------------------------------------------------------------------------------------------------
# Files.


def _require_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Kokoro {what} not found: {path}; {_DOWNLOAD}")
    return path


def _require_spacy(spacy_model: str | os.PathLike | None) -> Optional[Path]:
    """The spaCy pipeline folder, or None for the installed package; FileNotFoundError when there is neither."""
    if spacy_model is None:
        import spacy

        if not spacy.util.is_package(SPACY_PACKAGE):
            raise FileNotFoundError(f"spaCy pipeline {SPACY_PACKAGE!r} (misaki's English tagger) is not installed and "
                                    f"no spacy_model folder was given; {_SPACY_HOW}")
        return None
    path = Path(spacy_model)
    if (path / "config.cfg").is_file():
        return path
    # An unpacked package (en_core_web_sm/) keeps its pipeline in one versioned subfolder (en_core_web_sm-3.8.0/).
    inner = sorted(path.glob("*/config.cfg")) if path.is_dir() else []
    if len(inner) == 1:
        return inner[0].parent
    raise FileNotFoundError(f"spaCy pipeline folder not found: {path} (expected a folder with config.cfg, as written "
                            f"by nlp.to_disk, or an unpacked spaCy model package); {_SPACY_HOW}")


def _digest(path: Path) -> str:
    """Content digest of a file (sampled above 64 MiB) or of a folder's files (caches excluded)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(f"{f.relative_to(path).as_posix()}\0{_digest(f)}\0".encode())
        return h.hexdigest()[:12]
    size = path.stat().st_size
    h.update(f"{size}\0".encode())
    with open(path, "rb") as f:
        if size <= _FULL_DIGEST_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:  # start, middle and end: any other checkpoint of the same size differs there
            for offset in (0, (size - _DIGEST_BLOCK) // 2, size - _DIGEST_BLOCK):
                f.seek(offset)
                h.update(f.read(_DIGEST_BLOCK))
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------------
# kokoro and misaki without downloads (imported lazily: importing salad.speech.kokoro stays cheap).


@functools.cache
def _offline_g2p_class() -> type:
    from misaki import en

    class OfflineG2P(en.G2P):
        """misaki's English G2P on a given spaCy pipeline (en.G2P.__init__ loads one by package name, downloading it
        when it is not installed); the attributes are those en.G2P.__init__ sets in misaki 0.9.4."""

        def __init__(self, nlp: Any, british: bool, fallback: Any) -> None:
            self.version = None
            self.british = british
            self.nlp = nlp
            self.lexicon = en.Lexicon(british)
            self.fallback = fallback
            self.unk = ""  # as KPipeline: words without phonemes are skipped

    return OfflineG2P


@functools.cache
def _offline_pipeline_class() -> type:
    from kokoro import KPipeline

    class OfflinePipeline(KPipeline):
        """A KPipeline from ready objects (KPipeline.__init__ builds misaki's G2P by spaCy package name and may
        download a model); only `generate_from_tokens` is used."""

        def __init__(self, lang_code: str, model: Any, g2p: Any) -> None:
            self.repo_id = KOKORO_REPO
            self.lang_code = lang_code
            self.model = model
            self.voices = {}
            self.g2p = g2p

    return OfflinePipeline


def _load_spacy(folder: Optional[Path]) -> Any:
    """The spaCy pipeline with only the components misaki enables (tok2vec/transformer and tagger)."""
    import spacy

    nlp = spacy.load(folder if folder is not None else SPACY_PACKAGE)
    if "tagger" not in nlp.pipe_names:
        raise ValueError(f"spaCy pipeline {folder or SPACY_PACKAGE} has no 'tagger' component (components: "
                         f"{nlp.pipe_names}); misaki reads Penn Treebank tags (Token.tag_) from it")
    nlp.select_pipes(enable=[n for n in nlp.pipe_names if n in ("tok2vec", "transformer", "tagger")])
    return nlp


def _load_model(model_path: Path, config_path: Path) -> Any:
    """KModel from the local config, loaded strictly from the local checkpoint (no download, no partial load)."""
    import torch
    from kokoro import KModel

    try:
        checkpoint = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{model_path}: not a loadable Kokoro checkpoint ({e})") from e
    if not isinstance(checkpoint, dict) or set(checkpoint) != set(_MODULES):
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{model_path}: a Kokoro checkpoint holds the state dicts {list(_MODULES)}, found {keys}")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # kokoro's modules warn about LSTM dropout with one layer and the deprecated weight_norm: harmless here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        try:
            model = KModel(repo_id=KOKORO_REPO, config=str(config_path), model=str(empty))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{config_path}: not a usable Kokoro config ({type(e).__name__}: {e})") from e
    for name in _MODULES:
        state = checkpoint[name]
        if all(k.startswith("module.") for k in state):  # the release checkpoint was saved from DataParallel
            state = {k[len("module."):]: v for k, v in state.items()}
        try:
            getattr(model, name).load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{model_path}: checkpoint part {name!r} does not fit the config {config_path}: {e}") \
                from e
    return model.eval()


def _load_voice(voice_path: Path, style_dim: int) -> Any:
    import torch

    try:
        pack = torch.load(voice_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{voice_path}: not a loadable Kokoro voice pack ({e})") from e
    want = f"[>= {_MAX_PHONEMES}, 1, {2 * style_dim}]"
    if not isinstance(pack, torch.Tensor) or not pack.is_floating_point() or pack.ndim != 3 \
            or pack.shape[0] < _MAX_PHONEMES or tuple(pack.shape[1:]) != (1, 2 * style_dim):
        shape = list(pack.shape) if isinstance(pack, torch.Tensor) else type(pack).__name__
        raise ValueError(f"{voice_path}: a Kokoro voice pack is a float tensor {want}, found {shape}")
    return pack.float().contiguous()


@dataclass
class _Engine:
    pipeline: Any
    g2p: Any
    pack: Any


def _seeded(results: Iterable) -> Iterator:
    """Yield from KPipeline's generator, seeding torch before each chunk's inference (see Determinism)."""
    import torch

    it = iter(results)
    while True:
        torch.manual_seed(_CHUNK_SEED)
        try:
            result = next(it)
        except StopIteration:
            return
        yield result


# ---------------------------------------------------------------------------------------------------------------
# From misaki tokens to word times.


@dataclass(frozen=True)
class _Timed:
    words: tuple[int, ...]  # indices (into the text's words) of the words the token's characters lie in
    start: float
    end: float
    spoken: bool  # its phonemes hold a letter (not a pause for punctuation)


def _token_words(tokens: list, line: str, word_starts: list[int], word_ids: list[int]) -> list[tuple[int, ...]]:
    """For each misaki token, the words of `line` its characters lie in (see rule 1 of the module docstring)."""
    out, cursor = [], 0
    for tk in tokens:
        owners: list[int] = []
        for ch in tk.text:
            if ch.isspace():
                continue
            j = line.find(ch, cursor, cursor + _ALIGN_WINDOW)
            if j < 0:
                continue
            w = word_ids[bisect.bisect_right(word_starts, j) - 1]
            if not owners or owners[-1] != w:
                owners.append(w)
            cursor = j + 1
        out.append(tuple(owners))
    return out


def _own_intervals(timed: list[_Timed], speakable: list[bool], text_words: list[str]) -> dict[int, list[float]]:
    """Word -> [start, end] from the spoken tokens of each word (rules 2-3)."""
    own: dict[int, list[float]] = {}
    last: Optional[int] = None
    pending: Optional[float] = None  # start of speech of non-speakable words before the first speakable one
    for t in timed:
        if not t.spoken:
            continue
        targets = [w for w in t.words if speakable[w]]
        if not targets:
            if last is not None:
                own[last][1] = max(own[last][1], t.end)
            elif pending is None:
                pending = t.start
            continue
        for w, (a, b) in zip(targets, _split(t.start, t.end, [word_weight(text_words[w]) for w in targets])):
            if w in own:
                own[w][0], own[w][1] = min(own[w][0], a), max(own[w][1], b)
            else:
                own[w] = [a, b]
        if pending is not None:
            own[targets[0]][0] = min(own[targets[0]][0], pending)
            pending = None
        last = targets[-1]
    return own


def _split(start: float, end: float, weights: list[int]) -> list[tuple[float, float]]:
    """[start, end] cut into consecutive pieces in proportion to `weights` (exact outer bounds)."""
    cum = np.cumsum([0, *weights], dtype=np.float64)
    bounds = start + (end - start) * cum / cum[-1]
    bounds[0], bounds[-1] = start, end
    return [(float(bounds[i]), float(bounds[i + 1])) for i in range(len(weights))]


def _layout(own: dict[int, list[float]], speakable_ids: list[int], text_words: list[str],
            duration: float) -> list[tuple[int, float, float]]:
    """(word, start, end) for every speakable word: groups around timed words, clipped, split (rules 4-5)."""
    groups: list[list] = []  # [members, start, end]
    before_first: list[int] = []
    for w in speakable_ids:
        if w in own:
            groups.append([before_first + [w], *own[w]])
            before_first = []
        elif groups:
            groups[-1][0].append(w)
        else:
            before_first.append(w)

    kept: list[list] = []
    orphans: list[int] = []  # members of groups left without time, before any group with time
    previous_end = 0.0
    for members, a, b in groups:
        a = min(max(a, previous_end), duration)
        b = min(max(b, a), duration)
        if b <= a:
            if kept:
                kept[-1][0].extend(members)
            else:
                orphans.extend(members)
            continue
        kept.append([orphans + members, a, b])
        orphans = []
        previous_end = b
    if not kept:
        raise ValueError("Kokoro gave no word a time inside its audio")

    out = []
    for members, a, b in kept:
        for w, (s, e) in zip(members, _split(a, b, [word_weight(text_words[w]) for w in members])):
            out.append((w, s, e))
    return out


# ---------------------------------------------------------------------------------------------------------------


class KokoroTTS:
    """Kokoro-82M voice `voice` (a local .pt pack) at `speed`, from local model, config and spaCy files.

    See the module docstring for the files, the word contract and determinism. `lang_code` is KPipeline's English
    code: 'a' (American, the paper's af_heart) or 'b' (British).
    """

    def __init__(self, model: str | os.PathLike, config: str | os.PathLike, voice: str | os.PathLike,
                 spacy_model: str | os.PathLike | None = None, lang_code: str = "a", speed: float = 1.0,
                 sample_rate: int = KOKORO_SAMPLE_RATE) -> None:
        if lang_code not in ("a", "b"):
            raise ValueError(f"lang_code must be 'a' (American English) or 'b' (British English), got {lang_code!r}")
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.model_path = _require_file(model, "model checkpoint (kokoro-v1_0.pth)")
        self.config_path = _require_file(config, "config (config.json)")
        self.voice_path = _require_file(voice, "voice pack (e.g. voices/af_heart.pt)")
        self.spacy_path = _require_spacy(spacy_model)
        self.voice = self.voice_path.stem  # the voice's name, e.g. af_heart, as stored in the speech records
        self.lang_code = lang_code
        self.speed = float(speed)
        self.sample_rate = int(sample_rate)
        ratio = Fraction(self.sample_rate, KOKORO_SAMPLE_RATE)
        self._up, self._down = ratio.numerator, ratio.denominator
        self._repr = self._describe()
        self._engine: Optional[_Engine] = None
        self._load()  # fail now, not on the first document, for files that do not fit

    @classmethod
    def from_config(cls, cfg: SynthesizeConfig) -> KokoroTTS:
        """The fixed voice of `cfg` (tts: kokoro): the Kokoro-82M files and voice pack it names."""
        return cls(model=cfg.kokoro_model, config=cfg.kokoro_config, voice=cfg.kokoro_voice,
                   spacy_model=cfg.kokoro_spacy_model, speed=cfg.kokoro_speed, sample_rate=cfg.sample_rate)

    def _describe(self) -> str:
        def named(path: Path) -> str:
            return f"{path.name}#{_digest(path)}"

        if self.spacy_path is None:
            spacy_desc = f"{SPACY_PACKAGE}=={importlib.metadata.version(SPACY_PACKAGE)}"
        else:
            spacy_desc = named(self.spacy_path)
        versions = ", ".join(f"{p}={importlib.metadata.version(p)}" for p in ("kokoro", "misaki"))
        return (f"KokoroTTS(model={named(self.model_path)!r}, config={named(self.config_path)!r}, "
                f"voice={named(self.voice_path)!r}, spacy_model={spacy_desc!r}, lang_code={self.lang_code!r}, "
                f"speed={self.speed!r}, sample_rate={self.sample_rate}, {versions})")

    def __repr__(self) -> str:
        return self._repr

    def __getstate__(self) -> dict:  # the loaded model is rebuilt in the receiving process
        return {**self.__dict__, "_engine": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _load(self) -> _Engine:
        with _LOCK:
            if self._engine is None:
                self._engine = self._build_engine()
            return self._engine

    def _build_engine(self) -> _Engine:
        import json

        from loguru import logger
        from misaki import espeak

        for path, what in ((self.model_path, "model checkpoint"), (self.config_path, "config"),
                           (self.voice_path, "voice pack")):
            _require_file(path, what)  # again in a worker process, which may see another file system
        _require_spacy(self.spacy_path)
        logger.disable("kokoro")  # kokoro logs every chunk's phonemes and durations at DEBUG level
        style_dim = int(json.loads(self.config_path.read_text(encoding="utf-8")).get("style_dim", 128))
        model = _load_model(self.model_path, self.config_path)
        pack = _load_voice(self.voice_path, style_dim)
        g2p = _offline_g2p_class()(_load_spacy(self.spacy_path), british=self.lang_code == "b",
                                   fallback=espeak.EspeakFallback(british=self.lang_code == "b"))
        pipeline = _offline_pipeline_class()(self.lang_code, model, g2p)
        return _Engine(pipeline=pipeline, g2p=g2p, pack=pack)

    def synthesize(self, text: str) -> Speech:
        """Speak `text`; return its audio and one `WordTime` per speakable word (see the module docstring).

        Raises ValueError for text that is empty, has no word with a letter or digit, or has no Latin-script word.
        """
        words = check_text(text)
        engine = self._load()
        text_words = [m.group() for m in words]
        speakable = [any(ch.isalnum() for ch in w) for w in text_words]
        audio_parts, timed = self._run(engine, text, words)
        if not audio_parts:
            raise ValueError(f"Kokoro produced no audio for the text {text[:80]!r}")
        audio = np.concatenate(audio_parts).astype(np.float32)
        if (self._up, self._down) != (1, 1):
            audio = resample_poly(audio, self._up, self._down).astype(np.float32)
        np.clip(audio, -1.0, 1.0, out=audio)
        duration = len(audio) / self.sample_rate

        own = _own_intervals(timed, speakable, text_words)
        speakable_ids = [i for i, s in enumerate(speakable) if s]
        try:
            spans = _layout(own, speakable_ids, text_words, duration)
        except ValueError as e:
            raise ValueError(f"{e}: {text[:80]!r}") from None
        result = [WordTime(word=words[i].group(), char_start=words[i].start(), char_end=words[i].end(), start=s,
                           end=e) for i, s, e in spans]
        return Speech(audio=audio, sample_rate=self.sample_rate, words=result)

    def _run(self, engine: _Engine, text: str, words: list[re.Match]) -> tuple[list[np.ndarray], list[_Timed]]:
        """Audio chunks at 24 kHz and the timed tokens (in seconds from the start of the audio) of every line."""
        import torch

        audio_parts: list[np.ndarray] = []
        timed: list[_Timed] = []
        n_samples = 0
        word_starts = [m.start() for m in words]
        with _LOCK, torch.random.fork_rng(devices=[]), torch.inference_mode():
            for line in _LINE_RE.finditer(text):
                ids = list(range(bisect.bisect_left(word_starts, line.start()),
                                 bisect.bisect_left(word_starts, line.end())))
                if not ids:
                    continue
                line_text = " ".join(words[i].group() for i in ids)  # whitespace collapsed to single spaces
                starts = [0]
                for i in ids[:-1]:
                    starts.append(starts[-1] + len(words[i].group()) + 1)
                _, tokens = engine.g2p(line_text, preprocess=False)
                owners = {id(tk): own for tk, own in zip(tokens, _token_words(tokens, line_text, starts, ids))}
                results = engine.pipeline.generate_from_tokens(tokens, voice=engine.pack, speed=self.speed)
                for result in _seeded(results):
                    if result.audio is None:
                        continue
                    offset = n_samples / KOKORO_SAMPLE_RATE
                    for tk in result.tokens or ():
                        if tk.start_ts is None or tk.end_ts is None or id(tk) not in owners:
                            continue
                        timed.append(_Timed(words=owners[id(tk)], start=offset + tk.start_ts,
                                            end=offset + tk.end_ts,
                                            spoken=any(ch.isalpha() for ch in tk.phonemes or "")))
                    chunk = np.atleast_1d(result.audio.numpy().astype(np.float32))
                    audio_parts.append(chunk)
                    n_samples += len(chunk)
        return audio_parts, timed
