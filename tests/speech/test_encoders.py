"""The encoder interface and registry (salad.speech.encoders) and the synthesizer registry (salad.speech.synthesis)."""

import dataclasses
import importlib
import subprocess
import sys

import pytest

from salad.config import EncodeConfig, SynthesizeConfig
from salad.speech.encoders import ENCODERS, make_encoder
from salad.speech.encoders.logmel import LogMelEncoder
from salad.speech.synthesis import SYNTHESIZERS, make_tts


@pytest.mark.parametrize("registry", [ENCODERS, SYNTHESIZERS])
def test_every_registered_backend_resolves_to_a_class_built_from_its_config(registry):
    for name, target in registry.items():
        module, cls = target.split(":")
        backend = getattr(importlib.import_module(module), cls)
        assert backend.__module__ == module and callable(backend.from_config), name


def test_unknown_names_are_errors_that_list_the_known_ones():
    # the config rejects them first; the registries say the same to a caller that bypasses it
    with pytest.raises(ValueError, match=r"unknown encoder 'wav2vec'; known: \['logmel', 'mimi', 'phones'\]"):
        make_encoder(dataclasses.replace(EncodeConfig(), encoder="wav2vec"))
    cfg = object.__new__(SynthesizeConfig)
    object.__setattr__(cfg, "tts", "festival")
    with pytest.raises(ValueError, match=r"unknown synthesizer 'festival'; known: \['espeak', 'kokoro'\]"):
        make_tts(cfg)


def test_make_encoder_builds_the_configured_log_mel_encoder():
    enc = make_encoder(EncodeConfig(encoder="logmel", n_mels=16))
    assert isinstance(enc, LogMelEncoder) and enc.dim == 64


def test_the_interface_package_stays_light():
    code = "import sys, salad.speech.encoders; print(sorted(m for m in ('torch', 'moshi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
