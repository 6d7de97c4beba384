"""A weight-free frozen speech encoder: log-mel frames stacked to 80 ms, at Mimi's frame rate (12.5 Hz).

Why: the offline world has no Mimi weights, yet the rest of the pipeline (interleaving at 12.5 Hz, the adapter, the
caches) must not care which encoder made its frames. This encoder has the same interface and frame rate, needs no
weights and no training, and maps the same audio to the same features bit for bit.

Definition (24 kHz audio):
- 20 ms hop (480 samples), 25 ms periodic Hann window (600 samples), 1024-point FFT, power spectrum normalised by the
  window's energy (so a level change of the audio shifts the log features by the same amount at every setting);
- `n_mels` triangular filters on the HTK mel scale (mel = 2595·log10(1 + f/700)), 0–8000 Hz, not area-normalised;
- log(mel + 1e-6);
- four consecutive 20 ms frames stacked into one 80 ms frame: feature `[4·n_mels]` = sub-frames 0..3, each `n_mels`
  values (time-major), giving 12.5 frames per second;
- a fixed affine map `(x - LOG_MEL_SHIFT) / LOG_MEL_SCALE`, the same for every dimension and every utterance.
  The constants put espeak speech at roughly zero mean and unit variance (measured on 400 words of espeak-ng
  prose, 152 s: log-mel mean -8.2, std 4.2 over all bins and frames, pauses included); digital silence maps to
  (log(1e-6) + 8) / 4 = -1.45.
  Per-utterance or per-batch statistics were ruled out so that a document's features never depend on what else
  is encoded with it, or on how long it is.

Time alignment: 20 ms sub-frame j is the window centred on the middle of [j·20 ms, (j+1)·20 ms) (the signal is
zero-padded by 2.5 ms on the left), so 80 ms frame i summarises audio time [i/12.5, (i+1)/12.5), seeing at most
2.5 ms beyond each edge through the window's tapered tails. The end is zero-padded so that a clip of duration d gives
exactly `n_frames(d) = ceil(d·12.5)` frames (salad.speech.encoders), the count interleaving (docs/design.md §3)
assumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salad.speech.encoders import FRAME_RATE, check_audio

if TYPE_CHECKING:
    from salad.config import EncodeConfig

__all__ = ["LogMelEncoder", "mel_filterbank", "LOG_MEL_SHIFT", "LOG_MEL_SCALE"]

STACK = 4  # 20 ms sub-frames per 80 ms frame
HOP_SECONDS = 1.0 / FRAME_RATE / STACK  # 20 ms
WINDOW_SECONDS = 0.025
F_MIN, F_MAX = 0.0, 8000.0
LOG_FLOOR = 1e-6
LOG_MEL_SHIFT = -8.0
LOG_MEL_SCALE = 4.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = F_MIN,
                   f_max: float = F_MAX) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular filters, equally spaced on the HTK mel scale between f_min and f_max."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.float64(f_min)), _hz_to_mel(np.float64(f_max)), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - freqs[:, None]) / (upper - centre)[None, :]
    return np.maximum(0.0, np.minimum(rising, falling))


class LogMelEncoder:
    """Frozen log-mel encoder: float audio at `sample_rate` -> float32 [n_frames, 4 · n_mels] at 12.5 Hz."""

    def __init__(self, n_mels: int = 80, sample_rate: int = 24000) -> None:
        if int(n_mels) != n_mels or n_mels < 1:
            raise ValueError(f"n_mels must be a positive integer, got {n_mels!r}")
        hop = sample_rate * HOP_SECONDS
        win = sample_rate * WINDOW_SECONDS
        if abs(hop - round(hop)) > 1e-9 or abs(win - round(win)) > 1e-9:
            raise ValueError(f"sample_rate {sample_rate} Hz does not give whole-sample 20 ms hops and 25 ms windows")
        if sample_rate < 2 * F_MAX:
            raise ValueError(f"sample_rate {sample_rate} Hz is below 2 x {F_MAX:.0f} Hz, the top mel filter edge")
        self.n_mels = int(n_mels)
        self.sample_rate = int(sample_rate)
        self.dim = STACK * self.n_mels
        self.hop = int(round(hop))
        self.win_length = int(round(win))
        self.n_fft = 1 << (self.win_length - 1).bit_length()
        self.pad_left = (self.win_length - self.hop) // 2  # centres each window on its 20 ms slot
        n = np.arange(self.win_length)
        self.window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.win_length)).astype(np.float32)  # periodic Hann
        # [n_fft // 2 + 1, n_mels] mel filters over the window's energy: power spectrum @ filters is the mel power
        self.filters = (mel_filterbank(self.n_mels, self.n_fft, self.sample_rate)
                        / float(np.sum(self.window.astype(np.float64) ** 2))).astype(np.float32)

    @classmethod
    def from_config(cls, cfg: EncodeConfig, trained: Path | None = None) -> LogMelEncoder:
        return cls(n_mels=cfg.n_mels)

    def __repr__(self) -> str:
        return f"LogMelEncoder(n_mels={self.n_mels}, sample_rate={self.sample_rate})"

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features of mono float `audio` (values in [-1, 1]); one row per 80 ms of audio, the last one zero-padded."""
        audio = check_audio(audio, sample_rate, self.sample_rate)
        frames_out = -(-len(audio) // (STACK * self.hop))  # ceil(n_samples / 1920) == n_frames(duration)
        n_sub = frames_out * STACK
        total = (n_sub - 1) * self.hop + self.win_length
        padded = np.zeros(total, dtype=np.float32)
        take = min(len(audio), total - self.pad_left)
        padded[self.pad_left:self.pad_left + take] = audio[:take]

        frames = np.lib.stride_tricks.sliding_window_view(padded, self.win_length)[::self.hop][:n_sub]
        spectrum = np.fft.rfft(frames * self.window, n=self.n_fft, axis=-1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        mel = power @ self.filters
        feats = (np.log(mel + np.float32(LOG_FLOOR)) - np.float32(LOG_MEL_SHIFT)) / np.float32(LOG_MEL_SCALE)
        return np.ascontiguousarray(feats.reshape(frames_out, self.dim), dtype=np.float32)
