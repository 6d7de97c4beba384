"""A random-weight Mimi checkpoint for tests and benchmarks. NOT a speech encoder: its features carry no meaning.

Why it exists: the real Mimi weights (`tokenizer-e351c8d8-checkpoint125.safetensors`) are a 385 MB download that
the offline world cannot make, yet the Mimi backend (salad.speech.encoders.mimi) must be tested and timed through moshi's
own loader. `build_random_mimi_checkpoint` builds the real architecture with `loaders.get_mimi(None)`, fixes its
codebooks, and saves a state dict that `loaders.get_mimi(path)` loads exactly as it would load the real file. Speed
and memory are those of the real network; the features are not.

The codebook trap: a fresh Mimi's codebooks are all zero (moshi fills them by k-means on the first training batch),
so every frame quantizes to code 0 at every level and the summed representation is constant. As moshi's own
k-means init does, each level is fitted to the vectors it will quantize: the semantic level (`rvq_first`) to the
encoder latents of some speech projected by its `input_proj`, the first acoustic level (`rvq_rest`) to the latents
projected by its own `input_proj`, and acoustic level k to the residuals left after acoustic levels < k. The speech
is deterministic espeak-ng prose (about 23 s, 290 frames).

Having far fewer latent frames than the 2,048 codebook entries, each level is fitted with `clusters` (default 64)
k-means centroids, tiled to fill all entries (entry j holds centroid j mod clusters; nearest-entry search then picks
the first copy). Fitting 2,048 entries to 290 frames would reproduce the frames themselves, leave zero residuals and
collapse every later level again.

Deterministic for a seed: the weights come from torch's global generator seeded inside `torch.random.fork_rng`
(the caller's RNG state is untouched), the k-means from its own seeded generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from salad.storage.atomic import atomic_path

__all__ = ["build_random_mimi_checkpoint", "STANDIN_TEXT"]

STANDIN_TEXT = (
    "The quick brown fox jumps over the lazy dog while seven zebras watch quietly from the hill. "
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells. "
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood? "
    "Peter Piper picked a peck of pickled peppers; where is the peck of pickled peppers he picked? "
    "In the morning, thirty-two children walked to school through the thick, grey fog of the valley."
)


def build_random_mimi_checkpoint(path: str | Path, seed: int = 0, clusters: int = 64,
                                 levels: int = 8, iters: int = 20) -> Path:
    """Save a random-weight Mimi with codebooks fitted to speech latents (see module docstring) to `path`.

    `levels` codebook levels are fitted (semantic + levels-1 acoustic); the rest stay zero, so they add nothing to
    the summed representation. Written atomically; returns `path`.
    """
    from moshi.models import loaders

    from salad.speech.tts import EspeakTTS

    if not 1 <= levels <= 32 or clusters < 1 or iters < 0:
        raise ValueError(f"need 1 <= levels <= 32, clusters >= 1, iters >= 0; got {levels}, {clusters}, {iters}")
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mimi = loaders.get_mimi(None, device="cpu")
    mimi.eval()

    speech = EspeakTTS(sample_rate=mimi.sample_rate).synthesize(STANDIN_TEXT)
    audio = torch.from_numpy(np.asarray(speech.audio, dtype=np.float32))[None, None]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        latent = mimi._encode_to_unquantized_latent(audio)  # [1, 512, T]
        quantizer = mimi.quantizer
        _fit_levels(quantizer.rvq_first, latent, 1, clusters, iters, gen)
        _fit_levels(quantizer.rvq_rest, latent, levels - 1, clusters, iters, gen)

    state = {k: v.detach().contiguous() for k, v in mimi.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "salad": f"random Mimi stand-in, seed={seed}; "
                                                                        f"not a speech encoder"})
    return path


def _fit_levels(rvq, latent: torch.Tensor, n_levels: int, clusters: int, iters: int,
                gen: torch.Generator) -> None:
    """Fit the first `n_levels` codebooks of a ResidualVectorQuantizer to `latent` [1, D, T], level by level."""
    residual = rvq.input_proj(latent)[0].T  # [T, dim]
    for layer in rvq.vq.layers[:n_levels]:
        book = layer._codebook
        centroids = _kmeans(residual, min(clusters, len(residual)), iters, gen)
        reps = -(-book.codebook_size // len(centroids))
        entries = centroids.repeat(reps, 1)[:book.codebook_size]
        book.embedding_sum.copy_(entries)  # embedding = embedding_sum / cluster_usage, and cluster_usage is 1
        book.cluster_usage.fill_(1.0)
        book._initialized.fill_(1.0)
        book.register_buffer("_embedding", None, persistent=False)  # drop moshi's cached embedding
        residual = residual - book.decode(book.encode(residual))


def _kmeans(samples: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means from k distinct samples; an empty cluster keeps its previous centroid."""
    samples = samples.contiguous()
    means = samples[torch.randperm(len(samples), generator=gen)[:k]].clone()
    for _ in range(iters):
        sq_dist = samples.pow(2).sum(1, keepdim=True) - 2 * samples @ means.T + means.pow(2).sum(1)  # (cdist: slow)
        assign = sq_dist.argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).to(samples.dtype)
        sums = torch.zeros_like(means).index_add_(0, assign, samples)
        means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], means)
    return means
