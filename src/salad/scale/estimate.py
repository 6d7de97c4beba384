"""What a profile costs before it runs: hours of audio, disk, GPU-hours (`salad estimate`, a dry run).

Everything the pipeline will write is counted exactly from the profile and the storage formats (int16 audio at
`synthesize.sample_rate`, float16 features of Mimi's 512 dimensions, or `encode.n_mels`, at 12.5 Hz; checkpoints of
fp32 weights with AdamW's two moments). What cannot be known without running on the target hardware is an explicit
`Rates` assumption, printed beside the result it drives, so that a measured rate (e.g. from
`benchmarks/frontend_speed.py` on one GPU of the cluster) replaces a guess by one flag. Nothing here loads a model
or reads a corpus: the language model's parameter count comes from its architecture, built on the meta device.

Training compute is counted the usual way (Kaplan et al. 2020): 6·N·D FLOPs for the trained student (forward and
backward) and 2·N·D for the frozen teacher's forward on the same positions, with N the parameters a position passes
through (the LM without its input embedding, plus the output projection, plus the adapter for speech frames).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from salad.config import Params
from salad.speech.encoders import FRAME_RATE

__all__ = ["Rates", "estimate", "lm_parameters", "format_estimate"]

SECONDS_PER_HOUR = 3600.0
MIMI_DIM = 512
ADAM_BYTES_PER_PARAM = 16  # held while training: fp32 weights, gradients, exp_avg and exp_avg_sq
CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weights, exp_avg and exp_avg_sq: what `last.pt` holds per trained parameter


@dataclass(frozen=True)
class Rates:
    """Throughputs and text statistics a dry run cannot measure here; override any with a measured value."""

    natural_speech_hours: float = 141_612.0
    """Hours of natural speech in D_speech (paper §5: Emilia-YODAS EN + LibriHeavy)."""
    web_tokens: float = 10e9
    """Tokens of D_web (paper §5: a 10B-token FineWeb-Edu subset); the spoken D_broad of the grid is all of it."""
    chars_per_token: float = 4.0
    """Characters per LM token of English web text (an assumption for Qwen2.5's tokenizer)."""
    tts_realtime: float = 100.0
    """Seconds of audio one GPU synthesizes per second with Kokoro-82M (an assumption; measure it)."""
    encoder_realtime: float = 2000.0
    """Seconds of audio one GPU encodes per second with Mimi, batched (an assumption; measure it)."""
    gpu_flops: float = 989e12
    """Peak dense bf16 FLOP/s of one GPU (H100 SXM)."""
    mfu: float = 0.4
    """Model FLOPs utilisation reached by FSDP training (an assumption)."""
    gpus: int = 64
    """GPUs of the job, for wall-clock time and the per-GPU share of sharded states."""

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"rate {name} must be positive, got {value}")
        if self.mfu > 1:
            raise ValueError(f"rate mfu must be at most 1, got {self.mfu}")


def lm_parameters(params: Params) -> dict[str, int]:
    """Parameter counts of the profile's Qwen2 architecture (`teacher` section), built on the meta device."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    t = params.teacher
    # whether the output projection shares the input embedding is a fact of the checkpoint, not of the profile
    tied, source = True, "assumed (teacher.pretrained has no local config.json)"
    config_file = Path(t.pretrained or "") / "config.json"
    if t.pretrained and config_file.is_file():
        tied, source = bool(json.loads(config_file.read_text()).get("tie_word_embeddings", False)), str(config_file)
    config = Qwen2Config(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                         num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads,
                         num_key_value_heads=t.num_kv_heads, tie_word_embeddings=tied)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())  # a tied matrix is one parameter, counted once
    embedding = model.get_input_embeddings().weight.numel()
    return {"total": total, "embedding": embedding, "tied": tied, "tied_source": source}


def adapter_parameters(params: Params, feature_dim: int) -> int:
    import torch

    from salad.model.speech_lm import AdapterConfig, SpeechAdapter

    c = params.train
    config = AdapterConfig(feature_dim=feature_dim, lm_hidden=params.teacher.hidden_size, layers=c.adapter_layers,
                           width=c.adapter_width, heads=c.adapter_heads, kv_heads=c.adapter_kv_heads, mlp=c.adapter_mlp)
    with torch.device("meta"):
        return sum(p.numel() for p in SpeechAdapter(config).parameters())


def _training_runs(params: Params) -> dict[str, float]:
    """Sequence positions trained, per kind of run (budgets branch a decay of decay_fraction of their own length)."""
    t, g, a = params.train, params.grid, params.active
    stage1 = t.tokens + t.decay_fraction * sum(t.budgets)
    cells = len(g.alphas) * len(g.data)
    grid = cells * (g.tokens + t.decay_fraction * sum(g.budgets))
    stage2 = len(a.gammas) * len(a.budgets) * a.tokens
    return {"stage1": stage1, "grid": grid, "stage2": stage2}


PHONES_DIM = 296
"""Feature width of the phone encoder: 4 sub-frames x its inventory, 74 phones in the default world (it is known only
once the `phones` stage has trained it)."""

def estimate(params: Params, rates: Rates = Rates()) -> dict:
    """The dry run's accounting for `params` under `rates`: audio hours, disk bytes, GPU-hours, wall hours."""
    r = rates
    feature_dim = {"mimi": MIMI_DIM, "logmel": 4 * params.encode.n_mels,
                   "phones": PHONES_DIM}[params.encode.encoder]
    seconds_per_token = r.chars_per_token * params.evaluate.speech_frames_per_char / FRAME_RATE
    hours = {
        "natural_speech": r.natural_speech_hours,
        "broad_synthetic": r.web_tokens * seconds_per_token / SECONDS_PER_HOUR if "broad" in params.grid.data else 0.0,
        "active_synthetic": max(params.active.budgets) * r.natural_speech_hours * len(params.active.gammas),
    }
    synthesized = hours["broad_synthetic"] + hours["active_synthetic"]
    encoded = sum(hours.values())
    audio_bytes_per_hour = params.synthesize.sample_rate * 2 * SECONDS_PER_HOUR
    feature_bytes_per_hour = FRAME_RATE * feature_dim * 2 * SECONDS_PER_HOUR

    lm = lm_parameters(params)
    adapter = adapter_parameters(params, feature_dim)
    trained = lm["total"] + adapter
    runs = _training_runs(params)
    positions = sum(runs.values())
    # every position passes through the LM's layers and its output projection (tied or not, a matmul of the
    # embedding's size), but not through the input embedding (a lookup); speech frames also pass the adapter
    n = lm["total"] - lm["embedding"] * (not lm["tied"]) + adapter * params.train.speech_probability
    train_flops = (6 + 2) * n * positions
    gpu_seconds = {
        "synthesis": synthesized * SECONDS_PER_HOUR / r.tts_realtime,
        "encoding": encoded * SECONDS_PER_HOUR / r.encoder_realtime,
        "training": train_flops / (r.gpu_flops * r.mfu),
    }
    checkpoint_bytes = trained * CHECKPOINT_BYTES_PER_PARAM
    n_models = 1 + len(params.train.budgets) + len(params.grid.alphas) * len(params.grid.data) * (
        1 + len(params.grid.budgets)) + len(params.active.gammas) * len(params.active.budgets)
    return {
        "rates": asdict(r),
        "audio_hours": {**hours, "synthesized": synthesized, "encoded": encoded},
        "seconds_per_token": seconds_per_token,
        "disk_bytes": {
            "audio": (hours["natural_speech"] + synthesized) * audio_bytes_per_hour,
            "features": encoded * feature_bytes_per_hour,
            "checkpoints": 2 * checkpoint_bytes * (1 + len(params.grid.alphas) * len(params.grid.data)),
            "models": n_models * trained * 2,
        },
        "parameters": {"lm": lm["total"], "lm_embedding": lm["embedding"], "lm_tied": lm["tied"],
                       "lm_tied_source": lm["tied_source"], "adapter": adapter, "trained": trained},
        "positions": {**runs, "total": positions},
        "train_flops": train_flops,
        "gpu_hours": {k: v / SECONDS_PER_HOUR for k, v in gpu_seconds.items()},
        "wall_hours": {k: v / SECONDS_PER_HOUR / r.gpus for k, v in gpu_seconds.items()},
        "per_gpu_state_bytes": (trained * ADAM_BYTES_PER_PARAM + lm["total"] * 2) / r.gpus,
        "models_saved": n_models,
    }


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError


def format_estimate(e: dict) -> str:
    """The estimate as the text a dry run prints."""
    h, d, g, w, p = e["audio_hours"], e["disk_bytes"], e["gpu_hours"], e["wall_hours"], e["parameters"]
    lines = [
        "audio (hours)",
        f"  natural speech        {h['natural_speech']:>14,.0f}   (rate natural_speech_hours)",
        f"  spoken D_broad        {h['broad_synthetic']:>14,.0f}   (web_tokens x {e['seconds_per_token']:.3f} s/token)",
        f"  D_active, all gammas  {h['active_synthetic']:>14,.0f}   (largest active budget x natural speech)",
        "disk",
        f"  audio (int16)         {_size(d['audio']):>14}",
        f"  features (float16)    {_size(d['features']):>14}",
        f"  checkpoints           {_size(d['checkpoints']):>14}   (last.pt + pre_decay.pt per run, 12 B/param)",
        f"  saved models (bf16)   {_size(d['models']):>14}   ({e['models_saved']} models)",
        "parameters",
        f"  LM {p['lm']:,} (embedding {p['lm_embedding']:,}, output projection "
        f"{'tied' if p['lm_tied'] else 'untied'}: {p['lm_tied_source']}), adapter {p['adapter']:,}",
        f"training: {e['positions']['total']:.3g} positions ({', '.join(f'{k} {v:.3g}' for k, v in e['positions'].items() if k != 'total')}),"
        f" {e['train_flops']:.3g} FLOPs",
        f"GPU-hours (wall hours on {e['rates']['gpus']} GPUs)",
        *(f"  {k:<21} {g[k]:>14,.0f}   ({w[k]:,.1f} h)" for k in g),
        f"  total                 {sum(g.values()):>14,.0f}   ({sum(w.values()):,.1f} h)",
        f"sharded weights + AdamW states per GPU: {_size(e['per_gpu_state_bytes'])} (activations not counted)",
        "assumptions: " + ", ".join(f"{k}={v:g}" for k, v in e["rates"].items()),
    ]
    return "\n".join(lines)
