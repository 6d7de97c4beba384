"""The `encode` stage: frozen speech-encoder features at 12.5 Hz for every synthesized corpus, cached on disk.

Features are stored as float16 (halving disk and page-cache use; the encoder's output range makes the rounding
error far below the features' own variation) in one memory-mappable array per corpus, with an index of frame offsets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from salad.atomic import save_npy, write_json, write_jsonl
from salad.config import EncodeConfig
from salad.corpus import load_audio, load_speech_index
from salad.encoder import LogMelEncoder


def make_encoder(cfg: EncodeConfig):
    if cfg.encoder == "logmel":
        return LogMelEncoder(n_mels=cfg.n_mels)
    raise ValueError(f"unknown encoder {cfg.encoder!r}")


def encode_corpus(encoder, speech_dir: Path, out: Path, desc: str) -> dict:
    index = load_speech_index(speech_dir)
    audio = load_audio(speech_dir)
    feats, out_index, offset = [], [], 0
    for rec in tqdm(index, desc=f"encode {desc}", unit="doc", mininterval=5):
        pcm = np.asarray(audio[rec["offset"]:rec["offset"] + rec["num_samples"]], dtype=np.float32) / 32768.0
        try:
            f = encoder(pcm, rec["sample_rate"])
        except ValueError as e:
            raise ValueError(f"{desc}: document {rec['id']!r}: {e}") from e
        feats.append(f.astype(np.float16))
        out_index.append({"id": rec["id"], "offset": offset, "n_frames": len(f)})
        offset += len(f)
    save_npy(out / "features.npy", np.concatenate(feats) if feats else np.zeros((0, encoder.dim), np.float16))
    write_jsonl(out / "index.jsonl", out_index)
    return {"documents": len(out_index), "frames": offset, "dim": encoder.dim}


def encode(cfg: EncodeConfig, speech: Path, out: Path) -> dict:
    encoder = make_encoder(cfg)
    stats = {name: encode_corpus(encoder, speech / name, out / name, name) for name in ("speech", "test", "eval")}
    write_json(out / "stats.json", stats)
    return stats
