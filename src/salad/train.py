"""The `train` stage: Stage I of the speech-adapted LM (DESIGN §4–5), straight-line.

Every batch is, with probability `speech_probability`, interleaved speech from D_speech, else text-only broad text
(the corpus mixing of the paper's Stage I). The loss is α·L_DIST + (1−α)·L_NLL over the masked positions of the
step. The whole batch plan (which documents, which span layouts) is drawn up front from the seed, so the number of
optimizer steps for a budget of sequence positions is known before training, which the WSD schedule needs, and
the data order is a pure function of (seed, step).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from salad.atomic import atomic_dir, read_jsonl, save_torch, write_json
from salad.batch import Batch, collate
from salad.config import Params, TrainConfig
from salad.corpus import load_aligned, tokenize
from salad.interleave import AlignedDoc, Interleaved, draw_layout, interleave, text_only
from salad.live import live_logger
from salad.losses import LossSums, distillation_sums, objective
from salad.model import AdapterConfig, SpeechAdaptedLM
from salad.schedule import wsd_factor


@dataclass
class PlannedBatch:
    kind: str                   # "speech" or "text"
    seqs: list[Interleaved]
    doc_index: list[int]        # index into the speech or text documents

    @property
    def positions(self) -> int:
        return sum(len(s) for s in self.seqs)


class EpochSampler:
    """Indices drawn without replacement, reshuffled every epoch."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng, self.order, self.i = n, rng, rng.permutation(n), 0

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            if self.i == self.n:
                self.order, self.i = self.rng.permutation(self.n), 0
            out.append(int(self.order[self.i]))
            self.i += 1
        return out


def plan_batches(cfg: TrainConfig, seed: int, speech_docs: list[AlignedDoc], text_docs) -> list[PlannedBatch]:
    """Batches until the budget of sequence positions is reached (the last batch may overshoot it)."""
    if not speech_docs and cfg.speech_probability > 0:
        raise ValueError("no speech documents to train on")
    rng = np.random.default_rng([seed, 1])
    speech_sampler = EpochSampler(len(speech_docs), rng) if speech_docs else None
    text_sampler = EpochSampler(len(text_docs), rng) if text_docs else None
    plan, seen = [], 0
    while seen < cfg.tokens:
        if rng.random() < cfg.speech_probability:
            idx = speech_sampler.take(cfg.batch_size)
            seqs = []
            for i in idx:
                doc = speech_docs[i]
                layout = draw_layout(doc.cut_points(), doc.n_words, rng, cfg.text_span_words, cfg.speech_span_words)
                seqs.append(interleave(doc, layout, cfg.max_len))
            plan.append(PlannedBatch("speech", seqs, idx))
        else:
            if text_sampler is None:
                raise ValueError("speech_probability < 1 but there are no text documents to mix in")
            idx = text_sampler.take(cfg.batch_size)
            plan.append(PlannedBatch("text", [text_only(text_docs[i], cfg.max_len) for i in idx], idx))
        seen += plan[-1].positions
    return plan


def batch_for(planned: PlannedBatch, speech_docs, text_docs, feature_dim: int) -> Batch:
    docs = speech_docs if planned.kind == "speech" else text_docs
    chosen = [docs[i] for i in planned.doc_index]
    return collate(planned.seqs, [d.token_ids for d in chosen], [d.features for d in chosen], feature_dim)


def loss_sums(model: SpeechAdaptedLM, teacher, batch: Batch, chunk: int) -> LossSums:
    """KL(Q‖P) and NLL summed over the masked positions of a batch; the teacher reads w, the student c."""
    hidden = model.hidden_states(batch)[batch.masked_rows, batch.masked_pos]
    with torch.no_grad():
        t_hidden = teacher.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state
        t_hidden = t_hidden[batch.masked_rows, batch.teacher_pos]
    return distillation_sums(hidden, t_hidden, batch.target_ids, model.lm.lm_head, teacher.lm_head, chunk)


def load_teacher(teacher_dir: Path):
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    teacher.requires_grad_(False)
    return teacher


class TextDocs:
    """Text-only documents of a prepared jsonl, tokenized on first use (a run touches only the documents it draws)."""

    def __init__(self, path: Path, tokenizer, max_len: int):
        self.texts = [r["text"] for r in read_jsonl(path)]
        self.tokenizer, self.max_len, self.cache = tokenizer, max_len, {}

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> AlignedDoc:
        if i not in self.cache:
            ids = tokenize(self.tokenizer, self.texts[i])[0][:self.max_len]
            self.cache[i] = AlignedDoc(id=str(i), token_ids=ids, token_word=np.zeros(len(ids), np.int64),
                                       word_times=np.zeros((0, 2)), features=None)
        return self.cache[i]


def run_fingerprint(params: Params, inputs: list[Path]) -> str:
    """What a checkpoint must match to be resumed: the training params and the bytes of the training inputs."""
    h = hashlib.sha256(json.dumps([params.seed, params.alpha, dataclasses.asdict(params.train)], sort_keys=True,
                                  default=list).encode())
    for path in inputs:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


_stop_after: int | None = None
"""Test hook: raise after this many optimizer steps, as a killed run would stop (after its checkpoints)."""


def train(params: Params, teacher_dir: Path, prepared: Path, speech: Path, features: Path,
          out: Path, live_dir: Path, metrics_path: Path, checkpoints: Path) -> dict:
    """Train Stage I; resume exactly from `checkpoints/last.pt` when it matches these params and inputs."""
    cfg = params.train
    torch.manual_seed(params.seed)
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = load_teacher(teacher_dir)
    speech_docs = load_aligned(speech / "speech", features / "speech", tokenizer)
    text_docs = TextDocs(prepared / "web.jsonl", tokenizer, cfg.max_len)
    feature_dim = speech_docs[0].features.shape[1]

    emb_std = float(teacher.get_input_embeddings().weight.std())
    adapter_cfg = AdapterConfig(
        feature_dim=feature_dim, lm_hidden=teacher.config.hidden_size, layers=cfg.adapter_layers,
        width=cfg.adapter_width, heads=cfg.adapter_heads, kv_heads=cfg.adapter_kv_heads, mlp=cfg.adapter_mlp,
        max_frames=max(cfg.max_len, 64), output_std=emb_std,
    )
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_cfg)
    groups = []
    for module, lr in ((model.adapter, cfg.lr_adapter), (model.lm, cfg.lr_lm)):
        params_2d = [p for p in module.parameters() if p.ndim >= 2]
        params_1d = [p for p in module.parameters() if p.ndim < 2]
        groups += [{"params": params_2d, "lr": lr, "weight_decay": cfg.weight_decay},
                   {"params": params_1d, "lr": lr, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))

    plan = plan_batches(cfg, params.seed, speech_docs, text_docs)
    steps = len(plan)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: wsd_factor(min(s, steps - 1), steps, cfg.warmup_steps, cfg.decay_fraction))

    fingerprint = run_fingerprint(params, [teacher_dir / "model.safetensors", features / "speech" / "index.jsonl",
                                           *sorted((features / "speech" / "shards").glob("*.done.json")),
                                           prepared / "web.jsonl"])
    start, positions, losses = 0, 0, []
    ckpt_path = checkpoints / "last.pt"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["torch_rng"])
            start, positions, losses = state["next_step"], state["positions"], state["losses"]
            print(f"resuming from {ckpt_path} at step {start} of {steps}", file=sys.stderr)
        else:
            print(f"ignoring {ckpt_path}: it belongs to other params or inputs", file=sys.stderr)

    model.train()
    with live_logger(live_dir, resume=start > 0) as live:
        for step in tqdm(range(start, steps), desc=f"train α={params.alpha}", unit="step", mininterval=5,
                         initial=start, total=steps):
            batch = batch_for(plan[step], speech_docs, text_docs, feature_dim)
            sums = loss_sums(model, teacher, batch, cfg.kl_chunk)
            loss = objective(sums, params.alpha, sums.count)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            lrs = schedule.get_last_lr()
            optimizer.step()
            schedule.step()
            positions += batch.positions
            losses.append(loss.item())
            if step % cfg.log_every == 0 or step == steps - 1:
                live.step = step
                live.log_metric("train/loss", loss.item())
                live.log_metric("train/kl", sums.kl.item() / sums.count)
                live.log_metric("train/nll", sums.nll.item() / sums.count)
                live.log_metric("train/lr_adapter", lrs[0])
                live.log_metric("train/lr_lm", lrs[2])
                live.log_metric("train/positions", positions)
                live.log_metric("train/speech_batch", int(plan[step].kind == "speech"))
                live.make_summary()
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
                save_torch(ckpt_path, {
                    "fingerprint": fingerprint, "next_step": step + 1, "positions": positions, "losses": losses,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
                })
            if _stop_after is not None and step + 1 == _stop_after:
                raise KeyboardInterrupt(f"stopped after step {step + 1} (test hook)")

    tail = losses[-max(1, steps // 10):]
    metrics = {
        "alpha": params.alpha, "steps": steps, "positions": positions,
        "speech_batches": sum(p.kind == "speech" for p in plan),
        "adapter_parameters": sum(p.numel() for p in model.adapter.parameters()),
        "final_loss": float(np.mean(tail)),
    }
    print(f"trained in {time.time() - t0:.1f} s", file=sys.stderr)
    with atomic_dir(out) as tmp:
        model.save(tmp)
        tokenizer.save_pretrained(tmp / "lm")
    write_json(metrics_path, metrics)
    ckpt_path.unlink(missing_ok=True)  # the finished model supersedes it
    return metrics
