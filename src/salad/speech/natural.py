"""Natural speech: parse a manifest of recordings with transcripts, check each recording, give every word a timestamp.

Why: the paper trains Stage I on natural speech (LibriHeavy, Emilia) whose word times come from a forced aligner
(Pratap et al., 2024). This module turns such a corpus into the records the pipeline already uses for synthesized
speech (salad.speech.synthesis): {id, text, sample_rate, num_samples, words: [[word, char_start, char_end, start_s,
end_s]]} plus the recording's float32 audio resampled to 24 kHz, so that encoding and interleaving need not know
where a document's speech came from.

Accepted manifest schemas (JSONL, optionally gzip-compressed; one recording per line)
-----------------------------------------------------------------------------------
Relative audio paths are resolved against the manifest's folder.

1. Flat (LJ Speech sample, Emilia-like):
   {"id": str, "audio": path (or "wav"), "text": str,
    optional "sample_rate": int, "num_samples": int, "duration_s": float (or "duration"), "speaker": str,
    optional "words": [{"word": str, "start": s, "end": s}, ...]  (or [[word, start, end], ...]) }
   The utterance is the whole file. Word times are seconds from the start of the file.
2. lhotse cut (LibriHeavy-like):
   {"id": str, "start": s (default 0), "duration": s,
    "recording": {"sources": [{"type": "file", "source": path}], "sampling_rate": int, "num_samples": int},
    "supervisions": [{"text": str, "start": s, "duration": s, "speaker": str,
                      "alignment": {"word": [[symbol, start, duration(, score)], ...]}}]}
   Exactly one supervision per cut. The utterance is the supervision's span of the recording (cut start +
   supervision start); alignment times are relative to the cut start, as lhotse stores supervisions inside cuts
   (dict items {"symbol", "start", "duration"}, lhotse's pre-1.8 form, are accepted too).

Word timestamps come from (a) the manifest's alignment when the record has one, else (b)/(c) the given aligner
(salad.speech.align: CTC forced alignment with a local Wav2Vec2ForCTC, or DTW against an espeak-ng rendering). A manifest
alignment is matched to the transcript's speakable words (salad.speech.align.speakable_words) after normalisation
(accents stripped, lower case, letters and digits only); symbols that normalise to nothing or are markers in <> or
[] (silences, noise) are ignored. Word spans are then made valid exactly as the aligners do
(salad.speech.align.finalize_spans): ordered, non-overlapping, 0 <= start < end <= duration.

Audio: read with soundfile (multi-channel files are averaged to mono), resampled to `sample_rate` with
scipy.signal.resample_poly (zero-phase, so times stay valid; 22.05 -> 24 kHz is 160/147), clipped to [-1, 1].

Bad input
---------
Problems of the manifest itself fail before any audio is read, with the file, line and id: a line that is not a
JSON object, a missing id / audio path / transcript field, an unknown schema, a duplicate id.
Problems of one recording are a counted skip (`RecordSkipped`, a ValueError whose message starts with its reason
code, so that salad.storage.store records it like a rejected synthesis); the reason codes are `SKIP_REASONS`.
Any other exception (a bug, a missing model) propagates; records already yielded are the caller's, and with
`NaturalJob` in salad.storage.store every finished shard stays committed. The `natural` stage (salad.stages.natural)
runs a `NaturalJob` over the configured manifest into a speech store.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy.signal import resample_poly

from salad.speech.align import Aligner, DTWConfig, TranscriptMismatch, finalize_spans, make_aligner, speakable_words
from salad.speech.tts import is_latin_or_digit
from salad.storage.store import CannotBuild

__all__ = ["NaturalEntry", "NaturalChecks", "RecordSkipped", "SKIP_REASONS", "read_manifest", "load_utterance",
           "process_entry", "iter_natural", "NaturalJob", "new_stats"]

SKIP_REASONS = {
    "audio_missing": "the audio file does not exist",
    "audio_unreadable": "soundfile cannot read the audio file",
    "sample_rate_mismatch": "the file's sample rate differs from the manifest's",
    "num_samples_mismatch": "the file's sample count differs from the manifest's num_samples",
    "duration_mismatch": "duration in the manifest differs from num_samples / sample_rate or from the file",
    "segment_outside_audio": "the utterance's start/duration reach beyond the file",
    "too_long": "the utterance is longer than NaturalChecks.max_duration_s",
    "silent": "the audio's peak is below NaturalChecks.min_peak_dbfs",
    "empty_transcript": "the transcript is empty",
    "no_speakable_word": "the transcript has no word with a letter or digit",
    "non_latin": "the transcript has no Latin-script letter or digit",
    "multiple_supervisions": "a lhotse cut with more or fewer than one supervision",
    "alignment_mismatch": "the manifest's aligned words do not match the transcript's words",
    "alignment_invalid": "the manifest's word times are not finite, inverted, or outside the audio",
    "no_alignment": "neither the manifest nor an aligner gives word times",
    "alignment_failed": "the aligner could not align the transcript to the audio",
    "transcript_mismatch": "the aligner's own cost (or the speaking rate) says the transcript is not what the "
                           "recording says, or the alignment failed",
}


class RecordSkipped(ValueError):
    """One recording cannot be used; `reason` is a key of SKIP_REASONS. str() is "reason: details (record id)"."""

    def __init__(self, record_id: str, reason: str, details: str) -> None:
        if reason not in SKIP_REASONS:
            raise KeyError(f"unknown skip reason {reason!r}")
        self.record_id, self.reason, self.details = record_id, reason, details
        super().__init__(f"{reason}: {details} (record {record_id!r})")


@dataclass(frozen=True)
class NaturalChecks:
    """Tolerances of the per-recording checks."""

    duration_tolerance_s: float = 0.02
    """Largest accepted difference between a declared duration and num_samples / sample_rate (or the file)."""
    min_peak_dbfs: float = -40.0
    """A recording whose largest absolute sample is below this level (dB full scale) counts as silent."""
    max_duration_s: float = 40.0
    """Longer utterances are skipped: DTW memory grows with the square of the duration (40 s: ~190 MB), CTC
    emission memory linearly; LibriHeavy and Emilia utterances are at most ~30 s."""
    alignment_tolerance_s: float = 0.05
    """Manifest word times may exceed the utterance's end by this much (they are clipped); more is invalid."""

    def __post_init__(self):
        if self.duration_tolerance_s < 0 or self.alignment_tolerance_s < 0:
            raise ValueError("NaturalChecks tolerances must be >= 0")
        if self.max_duration_s <= 0:
            raise ValueError("NaturalChecks.max_duration_s must be positive")


@dataclass(frozen=True)
class NaturalEntry:
    """One manifest line, parsed and checked for shape (no audio read yet)."""

    id: str
    line: int
    audio_path: Path
    text: str
    offset_s: float = 0.0
    """Start of the utterance in the audio file (lhotse cuts of long recordings); 0 for whole files."""
    segment_s: float | None = None
    """Length of the utterance in the file; None for the whole file."""
    sample_rate: int | None = None
    """Declared sample rate of the file, checked against it when given."""
    num_samples: int | None = None
    """Declared sample count of the file, checked against it when given."""
    duration_s: float | None = None
    """Declared duration of the utterance, checked against the audio when given."""
    speaker: str | None = None
    words: tuple[tuple[str, float, float], ...] | None = None
    """Given word alignment (symbol, start s, end s) relative to the utterance start; None when absent."""
    supervisions: int = 1
    """Number of supervisions of a lhotse cut (only 1 is usable)."""


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _schema_error(path: Path, line: int, rec_id, message: str) -> ValueError:
    return ValueError(f"{path}:{line}: record {rec_id!r}: {message}")


def _number(value, where: str, kind=float):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _given_words(items, where: str, lhotse: bool) -> tuple[tuple[str, float, float], ...]:
    """(symbol, start, end) from a flat `words` list or a lhotse `alignment.word` list."""
    if not isinstance(items, list):
        raise ValueError(f"{where} must be a list")
    out = []
    for k, it in enumerate(items):
        try:
            if isinstance(it, dict):
                word = it["symbol"] if lhotse else it["word"]
                start = it["start"]
                end = start + it["duration"] if lhotse else it["end"]
            else:
                word, start, third = it[0], it[1], it[2]
                end = start + third if lhotse else third
            out.append((str(word), float(start), float(end)))
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ValueError(f"{where}[{k}] is not a word with times: {it!r} ({e.__class__.__name__})") from None
    return tuple(out)


def _parse(obj: dict, path: Path, line: int, audio_root: Path) -> NaturalEntry:
    rec_id = obj.get("id")
    if not isinstance(rec_id, str) or not rec_id:
        raise _schema_error(path, line, rec_id, "needs a non-empty string 'id'")
    try:
        if "recording" in obj or "supervisions" in obj:  # lhotse cut
            rec, sups = obj.get("recording"), obj.get("supervisions")
            if not isinstance(rec, dict) or not isinstance(sups, list):
                raise ValueError("a lhotse cut needs a 'recording' object and a 'supervisions' list")
            sources = rec.get("sources") or []
            if len(sources) != 1 or sources[0].get("type", "file") != "file" or "source" not in sources[0]:
                raise ValueError("recording.sources must be one {'type': 'file', 'source': path}")
            sup = sups[0] if len(sups) == 1 else {}
            text = sup.get("text", "") if sups else ""
            if not isinstance(text, str):
                raise ValueError("supervisions[0].text must be a string")
            cut_start = _number(obj.get("start", 0.0), "start")
            sup_start = _number(sup.get("start", 0.0), "supervisions[0].start")
            sup_duration = _number(sup.get("duration", obj.get("duration")), "supervisions[0].duration")
            align = (sup.get("alignment") or {}).get("word")
            words = _given_words(align, "supervisions[0].alignment.word", lhotse=True) if align is not None else None
            if words is not None and sup_start:
                words = tuple((w, a - sup_start, b - sup_start) for w, a, b in words)
            return NaturalEntry(
                id=rec_id, line=line, audio_path=audio_root / sources[0]["source"], text=text,
                offset_s=cut_start + sup_start, segment_s=sup_duration,
                sample_rate=_number(rec.get("sampling_rate"), "recording.sampling_rate", int),
                num_samples=_number(rec.get("num_samples"), "recording.num_samples", int),
                duration_s=sup_duration, speaker=sup.get("speaker"), words=words, supervisions=len(sups))
        audio = obj.get("audio", obj.get("wav"))
        if not isinstance(audio, str) or not audio:
            raise ValueError("needs an 'audio' (or 'wav') path, or the lhotse cut fields")
        text = obj.get("text")
        if not isinstance(text, str):
            raise ValueError("needs a string 'text'")
        words = _given_words(obj["words"], "words", lhotse=False) if obj.get("words") is not None else None
        return NaturalEntry(
            id=rec_id, line=line, audio_path=audio_root / audio, text=text,
            sample_rate=_number(obj.get("sample_rate"), "sample_rate", int),
            num_samples=_number(obj.get("num_samples"), "num_samples", int),
            duration_s=_number(obj.get("duration_s", obj.get("duration")), "duration_s"),
            speaker=obj.get("speaker"), words=words)
    except ValueError as e:
        raise _schema_error(path, line, rec_id, str(e)) from None


def read_manifest(manifest_path: str | Path, audio_root: str | Path | None = None) -> list[NaturalEntry]:
    """Parse every line of the manifest; any malformed line or duplicate id is a ValueError naming it.

    Audio paths: an absolute path is used as it is; a relative one resolves against `audio_root`, by default the
    manifest's own folder (the convention of LJ Speech-style and lhotse manifests shipped beside their audio).
    """
    path = Path(manifest_path)
    if not path.is_file():
        raise FileNotFoundError(f"natural speech manifest {str(path)!r} does not exist")
    audio_root = path.parent if audio_root is None else Path(audio_root)
    entries: list[NaturalEntry] = []
    seen: dict[str, int] = {}
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{line_no}: a record must be a JSON object, got {type(obj).__name__}")
            entry = _parse(obj, path, line_no, audio_root)
            if entry.id in seen:
                raise ValueError(f"{path}:{line_no}: record id {entry.id!r} already appears on line {seen[entry.id]}")
            seen[entry.id] = line_no
            entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------------------------
# One recording.


def _check_text(entry: NaturalEntry) -> None:
    if not entry.text.strip():
        raise RecordSkipped(entry.id, "empty_transcript", "the transcript is empty")
    if not speakable_words(entry.text):
        raise RecordSkipped(entry.id, "no_speakable_word", f"no word with a letter or digit in {entry.text[:80]!r}")
    if not any(is_latin_or_digit(ch) for ch in entry.text):
        raise RecordSkipped(entry.id, "non_latin", f"no Latin letter or digit in {entry.text[:80]!r}")


def load_utterance(entry: NaturalEntry, checks: NaturalChecks = NaturalChecks()) -> tuple[np.ndarray, int]:
    """The utterance's mono float32 audio at the file's rate, after the file and duration checks."""
    import soundfile

    if not entry.audio_path.is_file():
        raise RecordSkipped(entry.id, "audio_missing", f"no file {str(entry.audio_path)!r}")
    try:
        info = soundfile.info(str(entry.audio_path))
    except (RuntimeError, OSError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise RecordSkipped(entry.id, "audio_unreadable", f"{entry.audio_path}: {e}") from None
    sr, frames = int(info.samplerate), int(info.frames)
    if entry.sample_rate is not None and entry.sample_rate != sr:
        raise RecordSkipped(entry.id, "sample_rate_mismatch",
                            f"manifest says {entry.sample_rate} Hz, {entry.audio_path.name} is {sr} Hz")
    if entry.num_samples is not None and entry.num_samples != frames:
        raise RecordSkipped(entry.id, "num_samples_mismatch",
                            f"manifest says {entry.num_samples} samples, {entry.audio_path.name} has {frames}")
    start = int(round(entry.offset_s * sr))
    length = frames - start if entry.segment_s is None else int(round(entry.segment_s * sr))
    if start < 0 or length <= 0 or start + length > frames + int(round(checks.duration_tolerance_s * sr)):
        raise RecordSkipped(entry.id, "segment_outside_audio",
                            f"utterance [{entry.offset_s:.3f}, +{entry.segment_s}] s in a file of {frames / sr:.3f} s")
    length = min(length, frames - start)
    if entry.duration_s is not None:
        declared = [(entry.duration_s, length / sr, "the audio")]
        if entry.num_samples is not None and entry.segment_s is None and entry.sample_rate:
            declared.append((entry.duration_s, entry.num_samples / entry.sample_rate, "num_samples / sample_rate"))
        for d, actual, what in declared:
            if abs(d - actual) > checks.duration_tolerance_s:
                raise RecordSkipped(entry.id, "duration_mismatch",
                                    f"manifest duration {d:.3f} s but {what} gives {actual:.3f} s")
    if length / sr > checks.max_duration_s:
        raise RecordSkipped(entry.id, "too_long", f"{length / sr:.1f} s > {checks.max_duration_s} s")
    try:
        data, _ = soundfile.read(str(entry.audio_path), start=start, frames=length, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as e:
        raise RecordSkipped(entry.id, "audio_unreadable", f"{entry.audio_path}: {e}") from None
    audio = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if audio.size == 0 or not np.all(np.isfinite(audio)):
        raise RecordSkipped(entry.id, "audio_unreadable", f"{entry.audio_path}: empty or non-finite samples")
    peak = float(np.max(np.abs(audio)))
    if peak <= 10 ** (checks.min_peak_dbfs / 20):
        level = "all zeros" if peak == 0 else f"peak {20 * math.log10(peak):.1f} dBFS"
        raise RecordSkipped(entry.id, "silent", f"{level} (threshold {checks.min_peak_dbfs} dBFS)")
    return np.ascontiguousarray(audio, dtype=np.float32), sr


def _norm(word: str) -> str:
    w = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return "".join(c for c in w.lower() if c.isalnum())


_MARKER = re.compile(r"^(<.*>|\[.*\])$")


def _manifest_spans(entry: NaturalEntry, duration: float, checks: NaturalChecks) -> list[tuple[float, float]]:
    """The manifest's word times matched one-to-one to the transcript's speakable words."""
    given = [(w, a, b) for w, a, b in entry.words if _norm(w) and not _MARKER.match(w.strip())]
    for w, a, b in given:
        if not (math.isfinite(a) and math.isfinite(b)) or b < a or a < -checks.alignment_tolerance_s \
                or b > duration + checks.alignment_tolerance_s:
            raise RecordSkipped(entry.id, "alignment_invalid",
                                f"word {w!r} at [{a}, {b}] s in an utterance of {duration:.3f} s")
    if any(given[k + 1][1] < given[k][1] for k in range(len(given) - 1)):
        raise RecordSkipped(entry.id, "alignment_invalid", "word start times are not in order")
    words = [_norm(w) for w, _, _ in speakable_words(entry.text)]
    if len(words) != len(given) or any(_norm(g[0]) != w for g, w in zip(given, words)):
        k = next((k for k, (g, w) in enumerate(zip(given, words)) if _norm(g[0]) != w), min(len(given), len(words)))
        got = given[k][0] if k < len(given) else "<end>"
        want = words[k] if k < len(words) else "<end>"
        raise RecordSkipped(entry.id, "alignment_mismatch",
                            f"{len(given)} aligned words for {len(words)} transcript words; first difference at "
                            f"word {k}: aligned {got!r}, transcript {want!r}")
    return [(a, b) for _, a, b in given]


def process_entry(entry: NaturalEntry, aligner: Aligner | None, sample_rate: int = 24000,
                  checks: NaturalChecks = NaturalChecks()) -> tuple[dict, np.ndarray]:
    """(index record, float32 audio at `sample_rate`) of one recording; RecordSkipped if it is unusable."""
    if entry.supervisions != 1:
        raise RecordSkipped(entry.id, "multiple_supervisions", f"{entry.supervisions} supervisions in the cut")
    _check_text(entry)
    if entry.words is None and aligner is None:
        raise RecordSkipped(entry.id, "no_alignment", "no word alignment in the manifest and no aligner given")
    audio, sr = load_utterance(entry, checks)
    if sr != sample_rate:
        ratio = Fraction(sample_rate, sr)
        audio = resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)
    np.clip(audio, -1.0, 1.0, out=audio)
    duration = len(audio) / sample_rate
    if entry.words is not None:
        words = finalize_spans(entry.text, _manifest_spans(entry, duration, checks), duration)
        source = "manifest"
    else:
        try:
            words = aligner.align(audio, sample_rate, entry.text)
        except TranscriptMismatch as e:
            raise RecordSkipped(entry.id, "transcript_mismatch", str(e)) from None
        except ValueError as e:
            raise RecordSkipped(entry.id, "alignment_failed", str(e)) from None
        source = aligner.name
    record = {
        "id": entry.id, "text": entry.text, "speaker": entry.speaker, "aligner": source,
        "sample_rate": sample_rate, "num_samples": len(audio),
        "words": [[w.word, w.char_start, w.char_end, round(w.start, 4), round(w.end, 4)] for w in words],
    }
    return record, audio


def new_stats(manifest: str | Path) -> dict:
    """The counters `iter_natural` fills in."""
    return {"manifest": str(manifest), "recordings": 0, "usable": 0, "audio_hours": 0.0, "words": 0,
            "aligned_by": {}, "skipped": {}, "skipped_records": []}


def _count_skip(stats: dict, e: RecordSkipped) -> None:
    stats["skipped"][e.reason] = stats["skipped"].get(e.reason, 0) + 1
    stats["skipped_records"].append({"id": e.record_id, "reason": e.reason, "details": e.details})


def iter_natural(manifest_path: str | Path, aligner: Aligner | None, sample_rate: int = 24000, *,
                 checks: NaturalChecks = NaturalChecks(), stats: dict | None = None,
                 progress: bool = True) -> Iterator[tuple[dict, np.ndarray]]:
    """Yield (index record, float32 audio at `sample_rate`) for every usable recording of the manifest, in order.

    `aligner` (salad.speech.align) times the words of records without an alignment in the manifest; None means every
    record must carry one (the others are skipped as 'no_alignment'). Pass a dict as `stats` to have it filled in
    with counts (see `new_stats`): recordings, usable, audio_hours, words, aligned_by, skipped {reason: count},
    skipped_records [{id, reason, details}]. The manifest is parsed entirely before the first record is yielded,
    so a malformed manifest fails before any work.
    """
    from tqdm import tqdm

    entries = read_manifest(manifest_path)
    stats = new_stats(manifest_path) if stats is None else stats
    stats.update({k: v for k, v in new_stats(manifest_path).items() if k not in stats})
    for entry in tqdm(entries, desc=f"natural {Path(manifest_path).name}", disable=not progress):
        stats["recordings"] += 1
        try:
            record, audio = process_entry(entry, aligner, sample_rate, checks)
        except RecordSkipped as e:
            _count_skip(stats, e)
            continue
        stats["usable"] += 1
        stats["audio_hours"] = round(stats["audio_hours"] + len(audio) / sample_rate / 3600, 6)
        stats["words"] += len(record["words"])
        stats["aligned_by"][record["aligner"]] = stats["aligned_by"].get(record["aligner"], 0) + 1
        yield record, audio


@dataclass
class NaturalJob:
    """The recordings of a manifest as a picklable `ShardJob` for salad.storage.store.build_store (int16 audio rows).

    The aligner is built lazily in each worker process from (`aligner_kind`, `ctc_model`, `dtw`), so that a CTC
    model is loaded once per worker and never pickled. `run` raises RecordSkipped (a ValueError) for an unusable
    recording, which the store skips and lists with its reason.
    """

    entries: list[NaturalEntry]
    aligner_kind: str = "auto"
    ctc_model: str | None = None
    dtw: DTWConfig = field(default_factory=DTWConfig)
    sample_rate: int = 24000
    checks: NaturalChecks = field(default_factory=NaturalChecks)
    _aligner: object = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def doc_id(self, i: int) -> str:
        return self.entries[i].id

    def aligner(self) -> Aligner | None:
        """The aligner, built on first use. A failure to build it is an error of the stage (CannotBuild, which the
        store does not count as a skip), never a skip of the record at hand."""
        if self.aligner_kind == "manifest":
            return None
        if self._aligner is None:
            try:
                self._aligner = make_aligner(self.aligner_kind, ctc_model=self.ctc_model, dtw=self.dtw,
                                             sample_rate=self.sample_rate)
            except Exception as e:
                raise CannotBuild(f"the natural-speech aligner {self.aligner_kind!r} cannot be built: {e}") from e
        return self._aligner

    def run(self, i: int) -> tuple[dict, np.ndarray]:
        entry = self.entries[i]
        aligner = None if entry.words is not None else self.aligner()
        record, audio = process_entry(entry, aligner, self.sample_rate, self.checks)
        pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
        return record, pcm

    def __getstate__(self):  # the aligner (a loaded model) is rebuilt in each worker
        state = dict(self.__dict__)
        state["_aligner"] = None
        return state
