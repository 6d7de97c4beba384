"""Frozen speech encoders: what an encoder is, the one frame rate, and the registry `encode.encoder` names.

The interface (`Encoder`)
-------------------------
An encoder is called as `encoder(audio, sample_rate)` with mono float audio: a 1-D floating-point array of samples in
[-1, 1] at `encoder.sample_rate` (24 kHz for every encoder here; the synthesized and natural speech stores hold 24 kHz
audio). It returns a float32 array [frames, encoder.dim] at FRAME_RATE (12.5 Hz): frame i summarises audio time
[i/12.5, (i+1)/12.5), and a clip of d seconds gives exactly `n_frames(d)` frames, the count interleaving
(docs/design.md §3) assumes. Bad audio (another sample rate, not mono, empty, not float, not finite) is a ValueError
from `check_audio`, the same message for every encoder.

What the encode stage (salad.speech.encoding) relies on besides the call:
- `dim`: the feature width, written into the feature store's stats and read by the adapter;
- `repr(encoder)`: part of the feature store's fingerprint, so it names everything that shapes the features (settings,
  a digest of weight files) and nothing that does not (a file's directory);
- the module that defines the encoder's class is hashed into the same fingerprint
  (`code_digest(..., backend=encoder)`), so an encoder lives in one module of its own;
- it pickles: the encode stage hands it to worker processes (a heavy encoder pickles as its settings and reloads);
- `from_config(cfg, trained)`: the encoder `EncodeConfig` describes; `trained` is the folder of an encoder the pipeline
  trains itself (the phone classifier, stage `phones`), None for the others.

Adding an encoder is one module here and one line of `ENCODERS` (plus its settings in salad.config.EncodeConfig).
This package stays light (numpy only): backends are imported when `make_encoder` builds one, so that e.g. the log-mel
encoder never pulls in torch and moshi.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from salad.config import EncodeConfig

__all__ = ["FRAME_RATE", "n_frames", "check_audio", "Encoder", "ENCODERS", "make_encoder"]

FRAME_RATE = 12.5
"""Encoder frames per second (Mimi's rate): one frame per 80 ms of audio, for every encoder."""


def n_frames(duration_s: float) -> int:
    """Number of 12.5 Hz frames for `duration_s` seconds of audio: ceil(duration_s · 12.5).

    A tolerance of 1e-6 frame absorbs float error, so that e.g. 1920 samples at 24 kHz (exactly 0.08 s) give 1 frame.
    """
    if not duration_s >= 0:
        raise ValueError(f"duration must be >= 0 seconds, got {duration_s!r}")
    return max(0, math.ceil(duration_s * FRAME_RATE - 1e-6))


def check_audio(audio: np.ndarray, sample_rate: int, expected_rate: int) -> np.ndarray:
    """`audio` as an array after the checks every frozen encoder makes; a ValueError says what is wrong.

    Shared by all encoders so that the same bad input gets the same message whichever encoder is configured.
    """
    if sample_rate != expected_rate:
        raise ValueError(f"audio sample rate {sample_rate} Hz does not match the encoder's {expected_rate} Hz; "
                         f"resample the audio first")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D mono samples, got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("cannot encode empty audio")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be floating point in [-1, 1], got dtype {audio.dtype}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    return audio


class Encoder(Protocol):
    """A frozen speech encoder (see the module docstring for the contract)."""

    dim: int
    """Feature width: the second axis of every output."""
    sample_rate: int
    """The only sample rate it accepts (Hz)."""

    @classmethod
    def from_config(cls, cfg: EncodeConfig, trained: Path | None = None) -> Encoder: ...

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """float32 [n_frames(len(audio) / sample_rate), dim] features of mono float `audio`."""
        ...

    def __repr__(self) -> str:
        """Everything that shapes the features, for the feature store's fingerprint."""
        ...


ENCODERS: dict[str, str] = {
    "logmel": "salad.speech.encoders.logmel:LogMelEncoder",  # weight-free, the offline world's default
    "mimi": "salad.speech.encoders.mimi:MimiEncoder",  # the paper's encoder (moshi, local weights)
    "phones": "salad.speech.encoders.phones:PhoneEncoder",  # a phone classifier trained by the pipeline (stage phones)
}
"""`encode.encoder` name → "module:class" of its encoder, imported only when it is built."""


def make_encoder(cfg: EncodeConfig, trained: Path | None = None) -> Encoder:
    """The frozen encoder `cfg` names, built from its settings (and, for an encoder the pipeline trains, from the
    folder `trained`); only that encoder's module is imported."""
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {cfg.encoder!r}; known: {sorted(ENCODERS)}")
    module, name = ENCODERS[cfg.encoder].split(":")
    return getattr(importlib.import_module(module), name).from_config(cfg, trained)
