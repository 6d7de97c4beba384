"""The paper's frozen speech encoder: Kyutai's Mimi, loaded through moshi's own loader (`loaders.get_mimi`).

Representation: for 24 kHz mono audio, Mimi's encoder (causal SEANet convolutions + a causal transformer,
downsampled to 12.5 Hz) gives one 512-d latent per 80 ms; its split residual quantizer maps each latent to one code
per codebook level: level 0 is the semantic codebook (distilled from WavLM), levels 1.. are acoustic residual
codebooks. The feature of a frame is the SUM over the first `num_codebooks` (paper: 8) levels of their quantized
codebook vectors, projected back to 512-d: `mimi.decode_latent(mimi.encode(x)[:, :8])`, which equals
sum_k output_proj_k(codebook_k[code_k]). This is the paper's choice (docs/design.md §2): one vector per frame that carries
the semantic content of level 0 and the acoustic detail of the residual levels, in the space Mimi's own decoder
reads, rather than 8 separate token streams.

Frame count: the audio is zero-padded at the end to a whole number of 1,920-sample frames, so a clip of d seconds
gives exactly `n_frames(d) = ceil(d·12.5)` frames, like salad.speech.encoders.logmel.LogMelEncoder (frame i covers audio time
[i/12.5, (i+1)/12.5)).

Batching equals one-at-a-time: Mimi's encoder is causal (it is built for streaming), so frame i depends only on the
audio up to the end of frame i. Right-padding a clip with zeros (or anything) to the longest clip of a batch
therefore leaves its first n_frames frames unchanged, and `encode_batch` simply trims each result. Measured on CPU:
noise appended after a clip changes its earlier latents by at most ~1e-8 (float summation order, not information
flow), and batched features equal one-at-a-time features exactly. A code decision could in principle flip on such
a near-tie (the tests would show it as a difference far above their 1e-5 tolerance); none was seen. `encode_batch`
sorts clips by length before batching, so that little compute is spent on padding; results keep the input order.
Speed: on a 2-core CPU batches were slower than one clip at a time (batch 8: 0.6x); batches pay on a GPU.

Weights are a local file (no network): users download `tokenizer-e351c8d8-checkpoint125.safetensors` from the
Hugging Face repo `kyutai/moshiko-pytorch-bf16` once and point `encode.mimi_weights` at it. salad.scale.mimi_standin
builds a random-weight file of the same format for tests and benchmarks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from salad.speech.encoders import check_audio, n_frames

if TYPE_CHECKING:
    from salad.config import EncodeConfig

__all__ = ["MimiEncoder", "MIMI_WEIGHTS_FILE", "MIMI_HUB_REPO", "weights_digest"]

MIMI_WEIGHTS_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
MIMI_HUB_REPO = "kyutai/moshiko-pytorch-bf16"
SAMPLE_RATE = 24000
FRAME_SIZE = 1920  # samples per 80 ms frame at 24 kHz
DIM = 512
MAX_CODEBOOKS = 32


def weights_digest(path: Path, blocks: int = 16, block_size: int = 1 << 20) -> str:
    """A cheap content digest of a weights file: sha256 over its size and `blocks` evenly spaced 1 MiB blocks.

    Reads 16 MiB instead of the whole 385 MB file; any retrained or different checkpoint changes every block, so
    this detects a changed file, which is what the feature store's fingerprint needs.
    """
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(blocks):
            f.seek(max(0, (size - block_size) * i // max(1, blocks - 1)))
            h.update(f.read(block_size))
    return h.hexdigest()[:16]


class MimiEncoder:
    """Frozen Mimi: float audio at 24 kHz -> float32 [n_frames, 512], the sum of the first `num_codebooks` levels."""

    dim = DIM
    sample_rate = SAMPLE_RATE

    def __init__(self, weights: str | Path, num_codebooks: int = 8, device: str = "cpu", batch_size: int = 8) -> None:
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(
                f"Mimi weights not found at {weights}. Download {MIMI_WEIGHTS_FILE} once from the Hugging Face repo "
                f"{MIMI_HUB_REPO} (e.g. `hf download {MIMI_HUB_REPO} {MIMI_WEIGHTS_FILE} --local-dir "
                f"weights/`) and set encode.mimi_weights in the params file to its path.")
        if int(num_codebooks) != num_codebooks or not 1 <= num_codebooks <= MAX_CODEBOOKS:
            raise ValueError(f"num_codebooks must be an integer in [1, {MAX_CODEBOOKS}], got {num_codebooks!r}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        from moshi.models import loaders  # heavy import, only when Mimi is configured

        self.weights, self.num_codebooks = weights, int(num_codebooks)
        self.device, self.batch_size = device, int(batch_size)
        self.model = loaders.get_mimi(weights, device=device, num_codebooks=self.num_codebooks)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._size, self._digest = weights.stat().st_size, weights_digest(weights)

    @classmethod
    def from_config(cls, cfg: EncodeConfig, trained: Path | None = None) -> MimiEncoder:
        return cls(cfg.mimi_weights, num_codebooks=cfg.mimi_codebooks, batch_size=cfg.mimi_batch_size)

    def __repr__(self) -> str:
        # The name, size and digest of the weights, not their directory: moving the file keeps cached features.
        return (f"MimiEncoder(weights={self.weights.name!r}, size={self._size}, digest={self._digest}, "
                f"num_codebooks={self.num_codebooks})")

    def __getstate__(self) -> dict:
        return {"weights": str(self.weights), "num_codebooks": self.num_codebooks, "device": self.device,
                "batch_size": self.batch_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)  # each worker process loads the weights itself

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features of mono float `audio` (values in [-1, 1]); one row per 80 ms, the last frame zero-padded."""
        return self.encode_batch([audio], sample_rate)[0]

    def encode_batch(self, audios: list[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
        """Features of each clip, as `self(audio, sample_rate)` would give them, encoded `batch_size` at a time."""
        audios = [check_audio(a, sample_rate, self.sample_rate) for a in audios]
        order = sorted(range(len(audios)), key=lambda i: len(audios[i]), reverse=True)
        out: list[np.ndarray | None] = [None] * len(audios)
        for start in range(0, len(order), self.batch_size):
            group = order[start:start + self.batch_size]
            for i, feats in zip(group, self._encode_padded([audios[i] for i in group])):
                out[i] = feats
        return out

    @torch.inference_mode()
    def _encode_padded(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Zero-pad to the longest clip rounded up to whole frames, encode as one batch, trim each clip's frames."""
        counts = [n_frames(len(a) / self.sample_rate) for a in audios]
        x = np.zeros((len(audios), 1, max(counts) * FRAME_SIZE), dtype=np.float32)
        for row, a in zip(x, audios):
            row[0, :len(a)] = a
        codes = self.model.encode(torch.from_numpy(x).to(self.device))  # [B, num_codebooks, T]
        latent = self.model.decode_latent(codes).float().cpu().numpy()  # [B, 512, T]
        assert latent.shape[-1] == max(counts), (latent.shape, counts)
        return [np.ascontiguousarray(lat[:, :n].T, dtype=np.float32) for lat, n in zip(latent, counts)]
