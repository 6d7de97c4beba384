"""The `phones` stage: train the frame-level phone classifier behind `encode.encoder: phones`, then freeze it.

Training data: `phones.docs` D_speech documents, each spoken by espeak-ng in a voice and rate drawn from
`phones.voices` x `phones.rates` with its phoneme events on, so every 20 ms sub-frame of log-mel gets the phone
espeak-ng was speaking (salad.speech.encoders.phones). Nothing here reads evaluation text: the held-out frame
accuracy is measured on test documents (never trained on by any model) in the fixed voice and in the second voice,
which the classifier never heard. Full-batch determinism: one seeded generator orders the frames, so the same
params give the same weights.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from salad.config import Params
from salad.speech.encoders.logmel import STACK, LogMelEncoder
from salad.speech.encoders.phones import (PAUSE, PhoneClassifier, PhoneEncoder, context_windows,
                                          save_classifier,
                                          subframe_labels)
from salad.speech.synthesis import assign_voices
from salad.speech.tts import EspeakTTS
from salad.storage.atomic import atomic_dir, read_jsonl, write_json
from salad.training.live import live_logger

__all__ = ["train_phones", "labelled_frames"]


def labelled_frames(records: list[dict], n_mels: int, context_frames: int, sample_rate: int, desc: str
                    ) -> tuple[np.ndarray, list[list[str]]]:
    """Context windows [frames, context · 4 · n_mels] of every record spoken in its `voice` at its `rate`, and the four
    sub-frame phone labels of each frame."""
    logmel = LogMelEncoder(n_mels=n_mels, sample_rate=sample_rate)
    voices: dict[tuple[str, int], EspeakTTS] = {}
    windows, labels = [], []
    for rec in tqdm(records, desc=desc, unit="doc", mininterval=5):
        key = (rec["voice"], rec["rate"])
        if key not in voices:
            voices[key] = EspeakTTS(voice=key[0], rate=key[1], sample_rate=sample_rate)
        speech = voices[key].synthesize(rec["text"], phonemes=True)
        feats = logmel(speech.audio, speech.sample_rate)
        sub = subframe_labels(speech.phonemes, STACK * len(feats))
        windows.append(context_windows(feats, context_frames))
        labels += [sub[STACK * i:STACK * (i + 1)] for i in range(len(feats))]
    return np.concatenate(windows), labels


def _accuracy(model: PhoneClassifier, windows: np.ndarray, targets: np.ndarray, pause: int) -> dict:
    with torch.inference_mode():
        predicted = model(torch.from_numpy(windows)).argmax(-1).numpy()
    right = predicted == targets
    speech = targets != pause
    return {"frames": int(len(targets)), "accuracy": round(float(right.mean()), 4),
            "accuracy_speech": round(float(right[speech].mean()), 4)}


def train_phones(params: Params, prepared: Path, out: Path, live_dir: Path, metrics_path: Path) -> dict:
    """Train the phone classifier on spoken D_speech documents and save it to `out` with its held-out accuracy."""
    cfg, sample_rate = params.phones, params.synthesize.sample_rate
    torch.manual_seed(params.seed)
    speech_docs = read_jsonl(prepared / "speech.jsonl")
    if len(speech_docs) < cfg.docs:
        raise ValueError(f"phones.docs is {cfg.docs} but prepared/speech.jsonl has {len(speech_docs)} documents")
    train_records = assign_voices(speech_docs[:cfg.docs], cfg.voices, cfg.rates, params.seed)
    windows, labels = labelled_frames(train_records, cfg.n_mels, cfg.context_frames, sample_rate, "phones: speak")
    counts = Counter(p for frame in labels for p in frame)
    phones = sorted(counts)
    index = {p: i for i, p in enumerate(phones)}
    targets = np.array([[index[p] for p in frame] for frame in labels], dtype=np.int64)

    model = PhoneClassifier(cfg.n_mels, len(phones), cfg.hidden, cfg.context_frames)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps_per_epoch = -(-len(targets) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total)
    order_rng = torch.Generator().manual_seed(params.seed)
    x_all, y_all = torch.from_numpy(windows), torch.from_numpy(targets)
    step = 0
    with live_logger(live_dir) as live, tqdm(total=total, desc="phones: train", unit="step", mininterval=5) as bar:
        for _ in range(cfg.epochs):
            order = torch.randperm(len(targets), generator=order_rng)
            for lo in range(0, len(order), cfg.batch_size):
                batch = order[lo:lo + cfg.batch_size]
                logits = model(x_all[batch])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(phones)), y_all[batch].reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                bar.update()
                if step % 50 == 0 or step == total:
                    live.log_metric("train/loss", loss.item())
                    live.next_step()
    model.eval()

    settings = {"n_mels": cfg.n_mels, "context_frames": cfg.context_frames, "hidden": cfg.hidden, "phones": phones}
    with atomic_dir(out) as tmp:
        save_classifier(model, settings, tmp)
        encoder = PhoneEncoder(tmp)  # what encode will load: its output width is part of the metrics
    metrics = {"phones": len(phones), "train_docs": len(train_records), "train_frames": int(len(targets)),
               "steps": step, "feature_dim": encoder.dim, "train": _accuracy(model, windows, targets, index[PAUSE]),
               "heldout": {}}
    test_docs = read_jsonl(prepared / "test.jsonl")[:cfg.heldout_docs]
    for voice in cfg.heldout_voices:
        records = [{**r, "voice": voice, "rate": params.synthesize.rate} for r in test_docs]
        held_windows, held_labels = labelled_frames(records, cfg.n_mels, cfg.context_frames, sample_rate,
                                                    f"phones: held out, {voice}")
        # a phone never seen in training cannot be predicted: it counts as an error
        held_targets = np.array([[index.get(p, -1) for p in frame] for frame in held_labels], dtype=np.int64)
        metrics["heldout"][voice] = _accuracy(model, held_windows, held_targets, index[PAUSE])
    write_json(metrics_path, metrics)
    return metrics
