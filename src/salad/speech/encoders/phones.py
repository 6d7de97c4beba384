"""A frozen phone encoder trained inside the pipeline: the miniature analogue of Mimi's semantic codebook.

Why: the weight-free log-mel encoder hands the adapter raw spectra, and a 5 M-parameter student trained on 600 k
tokens does not learn to hear words from them (explorations/README.md: next-word choice in speech at chance while
the same student reads the text at 0.58). Mimi's level-0 codebook is distilled from WavLM, a model that has already
learned which speech sounds are which. The honest miniature counterpart is a small classifier that has learned the
same thing from data the pipeline owns: espeak-ng reports every phoneme it speaks and when (salad.speech.tts), so a
frame-level phone classifier is trained on audio the TTS speaks with those timings (stage `phones`), then frozen and
applied to audio alone, like any other encoder. It never sees text at encoding time.

Definition (24 kHz audio):
- the log-mel encoder's features (`n_mels` bands, 20 ms sub-frames stacked to 80 ms; salad.speech.encoders.logmel);
- for 80 ms frame i, the classifier reads frames i-`context_frames`+1 .. i (frames before the audio are the log-mel
  of digital silence), so like the log-mel encoder and Mimi it never looks past the end of its own frame: a speech
  span's last frame cannot hear the word after it;
- an MLP (two hidden layers of `hidden` units, GELU) gives, for each of the frame's four 20 ms sub-frames, logits
  over the phone inventory (espeak-ng's phoneme names without stress marks; every pause is "_");
- the feature of the frame is the four sub-frames' log-posteriors, floored at -10 and mapped to [-1, 1] by
  (log p + 5) / 5: [4 · n_phones] values, sub-frame-major.

Labels: a 20 ms sub-frame's phone is the one espeak-ng was speaking at the sub-frame's centre (a phoneme lasts from
its event to the next); the pause before the first phoneme is "_".

The trained classifier is a folder: `classifier.pt` (the state dict) and `classifier.json` (n_mels, context_frames,
hidden and the inventory). `repr` names its settings and a digest of the weights, so retraining the classifier
re-encodes every feature store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from salad.speech.encoders import check_audio
from salad.speech.encoders.logmel import LOG_FLOOR, LOG_MEL_SCALE, LOG_MEL_SHIFT, STACK, LogMelEncoder

if TYPE_CHECKING:
    from salad.config import EncodeConfig
    from salad.speech.tts import PhonemeTime

__all__ = ["PAUSE", "phone_class", "subframe_labels", "PhoneClassifier", "context_windows", "PhoneEncoder",
           "save_classifier", "CLASSIFIER_WEIGHTS", "CLASSIFIER_CONFIG"]

PAUSE = "_"
SUBFRAME_SECONDS = 0.02
LOG_POSTERIOR_FLOOR = -10.0
CLASSIFIER_WEIGHTS = "classifier.pt"
CLASSIFIER_CONFIG = "classifier.json"
SILENCE_FEATURE = (np.log(np.float32(LOG_FLOOR)) - np.float32(LOG_MEL_SHIFT)) / np.float32(LOG_MEL_SCALE)


def phone_class(name: str) -> str:
    """The inventory entry of an espeak-ng phoneme name: stress marks (' and ,) removed, every pause "_"."""
    base = name.replace("'", "").replace(",", "")
    return PAUSE if not base or base.startswith("_") else base


def subframe_labels(phonemes: Sequence[PhonemeTime], n_subframes: int) -> list[str]:
    """The phone class spoken at the centre of each 20 ms sub-frame (PAUSE before the first phoneme)."""
    starts = np.array([p.start for p in phonemes], dtype=np.float64)
    centres = (np.arange(n_subframes) + 0.5) * SUBFRAME_SECONDS
    which = np.searchsorted(starts, centres, side="right") - 1  # the last phoneme started at or before the centre
    names = [phone_class(p.name) for p in phonemes]
    return [names[k] if k >= 0 else PAUSE for k in which]


def context_windows(logmel: np.ndarray, context_frames: int) -> np.ndarray:
    """[frames, context_frames · dim]: each frame's log-mel after the `context_frames - 1` frames before it."""
    pad = np.full((context_frames - 1, logmel.shape[1]), SILENCE_FEATURE, dtype=np.float32)
    padded = np.concatenate([pad, logmel.astype(np.float32)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, context_frames, axis=0)  # [frames, dim, context]
    return np.ascontiguousarray(windows.transpose(0, 2, 1).reshape(len(logmel), -1))


class PhoneClassifier(nn.Module):
    """Log-mel context window of a frame -> logits [batch, 4 sub-frames, n_phones]."""

    def __init__(self, n_mels: int, n_phones: int, hidden: int, context_frames: int) -> None:
        super().__init__()
        self.n_phones = n_phones
        self.net = nn.Sequential(nn.Linear(context_frames * STACK * n_mels, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, STACK * n_phones))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.net(windows).view(len(windows), STACK, self.n_phones)


def save_classifier(model: PhoneClassifier, settings: dict, folder: Path) -> None:
    """Write the classifier folder the encoder reads (into `folder`, which the caller makes atomic)."""
    torch.save(model.state_dict(), Path(folder) / CLASSIFIER_WEIGHTS)
    (Path(folder) / CLASSIFIER_CONFIG).write_text(json.dumps(settings, indent=1) + "\n")


class PhoneEncoder:
    """Frozen phone classifier: float audio at 24 kHz -> float32 [n_frames, 4 · n_phones] scaled log-posteriors."""

    sample_rate = 24000

    def __init__(self, classifier: str | Path) -> None:
        self.classifier = Path(classifier)
        weights, config = self.classifier / CLASSIFIER_WEIGHTS, self.classifier / CLASSIFIER_CONFIG
        if not weights.is_file() or not config.is_file():
            raise FileNotFoundError(f"no trained phone classifier at {self.classifier} (expected {CLASSIFIER_WEIGHTS} "
                                    f"and {CLASSIFIER_CONFIG}); the `phones` stage trains it: run `make repro`, or "
                                    f"`.venv/bin/dvc repro phones`")
        self.settings = json.loads(config.read_text())
        self.phones: list[str] = self.settings["phones"]
        self.context_frames = int(self.settings["context_frames"])
        self.logmel = LogMelEncoder(n_mels=self.settings["n_mels"], sample_rate=self.sample_rate)
        self.model = PhoneClassifier(self.settings["n_mels"], len(self.phones), self.settings["hidden"],
                                     self.context_frames)
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model.eval().requires_grad_(False)
        self.dim = STACK * len(self.phones)
        self._digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]

    @classmethod
    def from_config(cls, cfg: EncodeConfig, trained: Path | None = None) -> PhoneEncoder:
        if trained is None:
            raise ValueError("encode.encoder 'phones' needs the trained phone classifier's folder (the `phones` "
                             "stage's output, data/models/phones); pass it as --phones")
        return cls(trained)

    def __repr__(self) -> str:
        # the settings and the weights' digest, not the folder: moving the classifier keeps cached features
        return (f"PhoneEncoder(n_mels={self.settings['n_mels']}, context_frames={self.context_frames}, "
                f"hidden={self.settings['hidden']}, phones={len(self.phones)}, digest={self._digest})")

    def __getstate__(self) -> dict:
        return {"classifier": str(self.classifier)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def logits(self, logmel: np.ndarray) -> torch.Tensor:
        """[frames, 4, n_phones] logits of the log-mel frames of one clip."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(context_windows(logmel, self.context_frames)))

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features of mono float `audio` (values in [-1, 1]); one row per 80 ms of audio."""
        audio = check_audio(audio, sample_rate, self.sample_rate)
        log_posteriors = torch.log_softmax(self.logits(self.logmel(audio, sample_rate)), dim=-1)
        scaled = (log_posteriors.clamp(min=LOG_POSTERIOR_FLOOR) + 5.0) / 5.0
        return np.ascontiguousarray(scaled.reshape(len(scaled), self.dim).numpy(), dtype=np.float32)
