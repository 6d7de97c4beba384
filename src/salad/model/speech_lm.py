"""The speech-adapted LM: frozen encoder features → causal adapter → linear projection → text LM (paper A.1).

The encoder runs offline (the `encode` stage caches its features), so the model here starts from features:

    features [frames, feat_dim] → Linear → Llama decoder layers (causal) → RMSNorm → Linear → LM width

Text tokens go through the LM's own embedding table; the LM consumes the concatenation as `inputs_embeds` and
predicts the next text token at every position. The teacher is the frozen pretrained LM the student starts from.
Each speech span is run through the adapter on its own, so a span's representation depends only on its own audio.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaModel, PreTrainedModel

from salad.data.batch import Batch
from salad.model.teacher import check_trained_from


@dataclass(frozen=True)
class AdapterConfig:
    feature_dim: int
    lm_hidden: int
    layers: int = 2
    width: int = 256
    heads: int = 4
    kv_heads: int = 2
    mlp: int = 688
    max_frames: int = 4096
    output_std: float = 0.02
    """Initial std of the adapter's outputs: matched to the LM's embedding table so speech starts on its scale."""


class SpeechAdapter(nn.Module):
    def __init__(self, config: AdapterConfig):
        super().__init__()
        self.config = config
        self.input_proj = nn.Linear(config.feature_dim, config.width)
        llama = LlamaConfig(
            vocab_size=1, hidden_size=config.width, intermediate_size=config.mlp,
            num_hidden_layers=config.layers, num_attention_heads=config.heads,
            num_key_value_heads=config.kv_heads, max_position_embeddings=config.max_frames,
            bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )
        self.decoder = LlamaModel(llama)
        # Inputs are always embeddings; the one-row token table would only be an unused parameter.
        self.decoder.embed_tokens = None
        self.output_proj = nn.Linear(config.width, config.lm_hidden)
        # The decoder ends in an RMSNorm (unit RMS per feature), so this std gives outputs of std ≈ output_std.
        nn.init.normal_(self.output_proj.weight, std=config.output_std / config.width ** 0.5)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames [S, L, feat_dim] (right-padded spans), mask [S, L] → [S, L, lm_hidden]."""
        if frames.shape[-1] != self.config.feature_dim:
            raise ValueError(f"speech features have dimension {frames.shape[-1]}, but this adapter reads "
                             f"{self.config.feature_dim}: the features come from another encoder than the one the "
                             f"model was trained on (encode.encoder, encode.n_mels); re-encode or retrain")
        h = self.input_proj(frames)
        h = self.decoder(inputs_embeds=h, attention_mask=mask.long()).last_hidden_state
        return self.output_proj(h)


class SpeechAdaptedLM(nn.Module):
    def __init__(self, lm: PreTrainedModel, adapter: SpeechAdapter):
        super().__init__()
        self.lm = lm
        self.adapter = adapter

    @classmethod
    def from_teacher(cls, teacher_dir: str | Path, adapter_config: AdapterConfig) -> "SpeechAdaptedLM":
        lm = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
        return cls(lm, SpeechAdapter(adapter_config))

    def input_embeddings(self, batch: Batch) -> torch.Tensor:
        """inputs_embeds [B, T, d]: token embeddings, with each speech span's adapter outputs written in place."""
        ids = batch.input_ids.clamp_min(0)
        embeds = self.lm.get_input_embeddings()(ids)
        if batch.speech_frames.shape[0] == 0:
            return embeds
        speech = self.adapter(batch.speech_frames, batch.speech_mask)
        lengths = batch.speech_mask.sum(1)
        rows = torch.repeat_interleave(batch.speech_dest[:, 0], lengths)
        starts = torch.repeat_interleave(batch.speech_dest[:, 1], lengths)
        offsets = torch.cat([torch.arange(int(n), device=lengths.device) for n in lengths])
        values = speech[batch.speech_mask.bool()]
        embeds = embeds.index_put((rows, starts + offsets), values)
        return embeds

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """Final hidden states [B, T, d] of the LM on the interleaved sequences (logits are never formed here)."""
        embeds = self.input_embeddings(batch)
        return self.lm.model(inputs_embeds=embeds, attention_mask=batch.attention_mask).last_hidden_state

    def save(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        self.lm.save_pretrained(out_dir / "lm")
        (out_dir / "adapter_config.json").write_text(json.dumps(asdict(self.adapter.config), indent=2))
        torch.save(self.adapter.state_dict(), out_dir / "adapter.pt")

    @classmethod
    def load(cls, model_dir: str | Path) -> "SpeechAdaptedLM":
        model_dir = Path(model_dir)
        for name in ("lm", "adapter_config.json", "adapter.pt"):
            if not (model_dir / name).exists():
                raise FileNotFoundError(f"{model_dir / name} is missing: run the `train` stage first")
        config = AdapterConfig(**json.loads((model_dir / "adapter_config.json").read_text()))
        adapter = SpeechAdapter(config)
        adapter.load_state_dict(torch.load(model_dir / "adapter.pt", weights_only=True))
        lm = AutoModelForCausalLM.from_pretrained(model_dir / "lm", dtype=torch.float32)
        return cls(lm, adapter)


def load_student(model_dir: str | Path, teacher_dir: str | Path) -> SpeechAdaptedLM:
    """A saved student, after checking that it was trained from the teacher in `teacher_dir`.

    M, F and the accuracies compare a student with its own teacher; another teacher's tokenizer or logits would give
    numbers that are silently wrong.
    """
    check_trained_from(Path(model_dir), Path(teacher_dir))
    return SpeechAdaptedLM.load(model_dir)
