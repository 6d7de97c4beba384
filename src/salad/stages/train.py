"""The `train` stage: Stage I of the speech-adapted LM (docs/design.md §4–5), straight-line.

Every optimizer step is, with probability `speech_probability`, interleaved speech from D_speech, else text-only
broad text (the corpus mixing of the paper's Stage I). The loss is α·L_DIST + (1−α)·L_NLL over the masked positions
of the step. The whole plan (which documents, which span layouts, step by step) is drawn up front from the seed, so
the number of optimizer steps for a budget of sequence positions is known before training, which the WSD schedule
needs, and the data order is a pure function of (seed, step): the step index is the data loader's position.

One step, many processes. A step holds `batch_size` sequences. Under `torchrun` (WORLD_SIZE > 1) rank r takes
sequences r, r+W, r+2W, ... of every step; each rank runs its share in micro-batches of `micro_batch_size`
sequences, accumulating gradients. Every micro-batch's loss is divided by the step's GLOBAL count of masked
positions (known to every rank from the plan, no communication needed), and the gradients are summed over ranks,
so the update equals the one-process, one-micro-batch update up to floating-point summation order (docs/design.md §4).
The gradient all-reduce is written out (one flattened SUM over all parameters) rather than delegated to
DistributedDataParallel: text-only steps leave the adapter without gradients, which DDP would reject unless it
searched the graph for unused parameters every step.

Paper scale (3B/7B): `train.fsdp` shards the student (parameters, gradients, AdamW states) and the frozen teacher
over the ranks with FSDP2 (salad.training.fsdp), optionally with activation checkpointing and bf16 compute. The step is the
same (same plan, micro-batches and normalisation by the global masked count); FSDP sums the gradients with its
reduce-scatter instead of the all-reduce, and every rank joins every backward (FSDP's collectives), a micro-batch
without masked positions with zero gradients. Checkpoints and models are gathered to full tensors on rank 0, in the
format of the unsharded path. Without `train.fsdp` the path is the unsharded one, unchanged.

Several budgets from one run (WSD, Hägele et al. 2024). The plan for a smaller budget B is a prefix of the plan for
`tokens` (drawn from the same generator in the same order), and up to its decay start, B's schedule equals the main
run's (same warmup, constant peak). So the state before step decay_start(S_B) is saved while the main run passes it
(`stable-<B>.pt`), and after the main run each budget branches its own decay from there: the result equals a run
trained with `tokens = B` from scratch. The main run's own pre-decay state is kept in the output as
`pre_decay.pt`: Stage II resumes from it.

Checkpoints (`last.pt` every `checkpoint_every` steps) hold the model, optimizer (with each group's peak rate),
schedule position, data position, losses and RNG state; a killed run resumes bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from salad.storage.atomic import atomic_dir, read_jsonl, save_torch, write_json
from salad.data.batch import Batch, collate
from salad.training.checkpoint import checkpoint_state, read_checkpoint, restore_checkpoint, resume, tail_mean
from salad.config import Params, TrainConfig
from salad.data.documents import load_aligned, tokenize
from salad.training.fsdp import full_state, is_sharded, settle_gradients, shard_for_training, unsharded_copy
from salad.data.interleave import AlignedDoc, Interleaved, draw_layout, interleave, text_only
from salad.training.live import live_logger
from salad.training.objective import LossSums, distillation_objective, distillation_sums
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.training.schedule import decay_start, wsd_factor
from salad.random_streams import stream


@dataclass
class PlannedBatch:
    """The sequences of one optimizer step (all ranks, all micro-batches)."""

    kind: str                   # "speech" or "text"
    seqs: list[Interleaved]
    doc_index: list[int]        # index into the speech or text documents

    @property
    def positions(self) -> int:
        return sum(len(s) for s in self.seqs)

    @property
    def n_masked(self) -> int:
        """Masked positions of the whole step: the normaliser of its loss."""
        return sum(int((s.target >= 0).sum()) for s in self.seqs)


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
    """Steps until the budget of sequence positions is reached (the last step may overshoot it)."""
    if not speech_docs and cfg.speech_probability > 0:
        raise ValueError("no speech documents to train on")
    rng = stream(seed, "train-plan")
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


def steps_for_budget(plan: list[PlannedBatch], tokens: int) -> int:
    """Optimizer steps of a run with budget `tokens`: the plan's prefix that first reaches it."""
    seen = 0
    for step, planned in enumerate(plan):
        seen += planned.positions
        if seen >= tokens:
            return step + 1
    raise ValueError(f"budget {tokens} exceeds the plan's {seen} positions")


def micro_batches(planned: PlannedBatch, rank: int, world_size: int, micro_batch_size: int | None) -> list[list[int]]:
    """Indices (into planned.seqs) of this rank's micro-batches: sequences rank, rank+W, ..., in chunks."""
    mine = list(range(rank, len(planned.seqs), world_size))
    size = micro_batch_size or len(mine)
    return [mine[i:i + size] for i in range(0, len(mine), size)]


def batch_for(planned: PlannedBatch, speech_docs, text_docs, feature_dim: int, which: list[int] | None = None) -> Batch:
    """The batch of the step's sequences `which` (all of them by default)."""
    which = range(len(planned.seqs)) if which is None else which
    docs = speech_docs if planned.kind == "speech" else text_docs
    chosen = [docs[planned.doc_index[j]] for j in which]
    return collate([planned.seqs[j] for j in which], [d.token_ids for d in chosen], [d.features for d in chosen],
                   feature_dim)


def masked_hidden(model: SpeechAdaptedLM, teacher, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states at the masked positions: the student's on c (position i), the teacher's on w (k−1)."""
    hidden = model.hidden_states(batch)[batch.masked_rows, batch.masked_pos]
    with torch.no_grad():
        t_hidden = teacher.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state
        t_hidden = t_hidden[batch.masked_rows, batch.teacher_pos]
    return hidden, t_hidden


def loss_sums(model: SpeechAdaptedLM, teacher, batch: Batch, chunk: int) -> LossSums:
    """KL(Q‖P) and NLL summed over the masked positions of a batch, differentiable (combine with `objective`)."""
    return distillation_sums(*masked_hidden(model, teacher, batch), batch.target_ids, model.lm.lm_head,
                             teacher.lm_head, chunk)


def load_teacher(teacher_dir: Path, device: torch.device | str = "cpu"):
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).to(device).eval()
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


def text_mix_file(params: Params, prepared: Path) -> Path:
    """The corpus of the text-only batches: D_web, or the fetched text-mixing corpus (paper: SmolLM) when
    prepare.text_mix_corpus is set."""
    return prepared / ("text_mix.jsonl" if params.prepare.text_mix_corpus else "web.jsonl")


def run_fingerprint(params: Params, inputs: list[Path]) -> str:
    """What a checkpoint must match to be resumed: the training params and the bytes of the training inputs.

    How the step is computed (ranks, micro-batches, FSDP sharding, activation checkpointing) is left out: it changes
    only the floating-point summation order, so a run may resume on another number of processes, with or without FSDP.
    """
    cfg = dataclasses.asdict(params.train)
    for how in ("micro_batch_size", "fsdp", "activation_checkpointing"):
        cfg.pop(how)
    if cfg["precision"] == "fp32":  # the default leaves the fingerprints of runs from before the key existed as they were
        cfg.pop("precision")
    h = hashlib.sha256(json.dumps([params.seed, params.alpha, cfg], sort_keys=True, default=list).encode())
    for path in inputs:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Processes and devices


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun) and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1: NCCL on GPUs, gloo on CPUs."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in one flattened buffer.

    A parameter no rank has a gradient for (the adapter on a text-only step) keeps `grad = None`, exactly as in one
    process, so that AdamW skips it (no decay, no moment update); a gradient missing on some ranks counts as zero.
    """
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g, used in zip(params, grads, has.tolist()):
        p.grad = flat[offset:offset + g.numel()].view_as(g).clone() if used else None
        offset += g.numel()


def _to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return Batch(**{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(Batch)})


# ---------------------------------------------------------------------------------------------------------------
# The optimizer step


def build_optimizer(model: SpeechAdaptedLM, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with separate peak rates for adapter and LM; no weight decay on biases and norms."""
    groups = []
    for module, lr in ((model.adapter, cfg.lr_adapter), (model.lm, cfg.lr_lm)):
        params_2d = [p for p in module.parameters() if p.ndim >= 2]
        params_1d = [p for p in module.parameters() if p.ndim < 2]
        groups += [{"params": params_2d, "lr": lr, "peak_lr": lr, "weight_decay": cfg.weight_decay},
                   {"params": params_1d, "lr": lr, "peak_lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, betas=(0.9, 0.95))


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, total_steps: int, cfg: TrainConfig) -> None:
    factor = wsd_factor(step, total_steps, cfg.warmup_steps, cfg.decay_fraction)
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor


def train_step(model: SpeechAdaptedLM, teacher, optimizer, planned: PlannedBatch, docs: tuple, feature_dim: int,
               cfg: TrainConfig, alpha: float, place: Dist) -> tuple[float, float, float]:
    """One optimizer step over this rank's micro-batches; returns the step's (loss, mean KL, mean NLL), global."""
    count = planned.n_masked
    sharded = is_sharded(model)
    optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(2, dtype=torch.float64)
    for which in micro_batches(planned, place.rank, place.world_size, cfg.micro_batch_size):
        batch = _to(batch_for(planned, *docs, feature_dim, which), place.device)
        hidden, t_hidden = masked_hidden(model, teacher, batch)
        # fused: each chunk's logits are formed once, with their gradient, and never recomputed in backward
        loss, part = distillation_objective(hidden, t_hidden, batch.target_ids, model.lm.lm_head, teacher.lm_head,
                                            alpha, count, cfg.kl_chunk)
        if loss.requires_grad:
            loss.backward()
        elif sharded:
            # no masked position here: still join the backward, whose reduce-scatters are collectives
            (hidden.sum() * 0.0).backward()
        sums += torch.tensor([part.kl.item(), part.nll.item()], dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    if sharded:
        settle_gradients(model, step_has_speech=any(s.speech_spans for s in planned.seqs))
        if place.world_size > 1:
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    elif place.world_size > 1:
        all_reduce_gradients(params)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    kl, nll = (sums / count).tolist()
    return alpha * kl + (1.0 - alpha) * nll, kl, nll


# ---------------------------------------------------------------------------------------------------------------
# Saving: rank 0 writes; a sharded model's full state is gathered by every rank


def save_checkpoint(path: Path, place: Dist, model, optimizer, *state) -> None:
    """Rank 0 writes `checkpoint_state(model, optimizer, *state)` to `path`; under FSDP every rank gathers it."""
    if place.main or is_sharded(model):
        checkpoint = checkpoint_state(model, optimizer, *state)
        if place.main:
            save_torch(path, checkpoint)


def snapshot(model, place: Dist) -> dict | None:
    """A copy of the model's weights (under FSDP: full tensors, on rank 0 only; every rank must call it)."""
    if is_sharded(model):
        return full_state(model.state_dict(), keep=place.main)
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_model(model, weights: dict, out_dir: Path) -> None:
    """`model` with `weights` (a snapshot) saved to `out_dir`; a sharded model through an unsharded copy."""
    if is_sharded(model):
        model = unsharded_copy(model, weights)
    else:
        model.load_state_dict(weights)
    model.save(out_dir)


_stop_after: int | None = None
"""Test hook: raise after this many optimizer steps, as a killed run would stop (after its checkpoints)."""


def train(params: Params, teacher_dir: Path, prepared: Path, speech: Path, features: Path,
          out: Path, live_dir: Path, metrics_path: Path, checkpoints: Path, corpus: str = "speech") -> dict:
    """Train Stage I (and branch the decay of each extra budget); resume exactly from `checkpoints/last.pt`.

    `corpus` names the speech store trained on (under `speech` and `features`): "speech" is D_speech, the narrow
    natural side; "broad" is D_broad, the grid's broad synthetic side.
    """
    cfg = params.train
    place = init_distributed()
    torch.manual_seed(params.seed)
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = load_teacher(teacher_dir, place.device)
    speech_docs = load_aligned(speech / corpus, features / corpus, tokenizer)
    text_docs = TextDocs(text_mix_file(params, prepared), tokenizer, cfg.max_len)
    feature_dim = speech_docs[0].features.shape[1]

    emb_std = float(teacher.get_input_embeddings().weight.std())
    adapter_cfg = AdapterConfig(
        feature_dim=feature_dim, lm_hidden=teacher.config.hidden_size, layers=cfg.adapter_layers,
        width=cfg.adapter_width, heads=cfg.adapter_heads, kv_heads=cfg.adapter_kv_heads, mlp=cfg.adapter_mlp,
        max_frames=max(cfg.max_len, 64), output_std=emb_std,
    )
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_cfg).to(place.device)
    if cfg.fsdp:
        shard_for_training(model, teacher, cfg, place)  # before the optimizer: it holds the shards
    optimizer = build_optimizer(model, cfg)

    plan = plan_batches(cfg, params.seed, speech_docs, text_docs)
    steps = len(plan)
    if cfg.batch_size < place.world_size:
        raise ValueError(f"train.batch_size {cfg.batch_size} < {place.world_size} processes: a rank would idle")
    branches = {b: steps_for_budget(plan, b) for b in cfg.budgets}
    for budget, n in branches.items():
        if decay_start(n, cfg.decay_fraction) < cfg.warmup_steps:
            raise ValueError(f"train.budgets: budget {budget} has {n} steps, too few to finish the warmup of "
                             f"{cfg.warmup_steps} steps before its decay; its schedule would not share the main run's")
    branch_at = {decay_start(n, cfg.decay_fraction): b for b, n in branches.items()}
    pre_decay = decay_start(steps, cfg.decay_fraction)

    fingerprint = run_fingerprint(params, [teacher_dir / "model.safetensors", features / corpus / "index.jsonl",
                                           *sorted((features / corpus / "shards").glob("*.done.json")),
                                           text_mix_file(params, prepared)])
    ckpt_path = checkpoints / "last.pt"
    start, positions, losses = resume(ckpt_path, fingerprint, model, optimizer, place.device, steps)

    docs = (speech_docs, text_docs)
    model.train()
    logger = live_logger(live_dir, resume=start > 0) if place.main else contextlib.nullcontext()
    with logger as live:
        for step in tqdm(range(start, steps), desc=f"train α={params.alpha}", unit="step", mininterval=5,
                         initial=start, total=steps, disable=not place.main):
            if step in branch_at:
                save_checkpoint(checkpoints / f"stable-{branch_at[step]}.pt", place, model, optimizer, fingerprint,
                                step, positions, losses)
            if step == pre_decay:
                save_checkpoint(checkpoints / "pre_decay.pt", place, model, optimizer, fingerprint, step, positions,
                                losses)
            set_learning_rate(optimizer, step, steps, cfg)
            lrs = [g["lr"] for g in optimizer.param_groups]
            loss, kl, nll = train_step(model, teacher, optimizer, plan[step], docs, feature_dim, cfg, params.alpha,
                                       place)
            positions += plan[step].positions
            losses.append(loss)
            if place.main and (step % cfg.log_every == 0 or step == steps - 1):
                live.step = step
                live.log_metric("train/loss", loss)
                live.log_metric("train/kl", kl)
                live.log_metric("train/nll", nll)
                live.log_metric("train/lr_adapter", lrs[0])
                live.log_metric("train/lr_lm", lrs[2])
                live.log_metric("train/positions", positions)
                live.log_metric("train/speech_batch", int(plan[step].kind == "speech"))
                live.make_summary()
            done = step + 1 == steps
            if done or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0):
                save_checkpoint(ckpt_path, place, model, optimizer, fingerprint, step + 1, positions, losses)
            if _stop_after is not None and step + 1 == _stop_after:
                raise KeyboardInterrupt(f"stopped after step {step + 1} (test hook)")

    metrics = {
        "alpha": params.alpha, "corpus": corpus, "steps": steps, "positions": positions,
        "speech_batches": sum(p.kind == "speech" for p in plan),
        "adapter_parameters": sum(p.numel() for p in model.adapter.parameters()),
        "final_loss": tail_mean(losses),
    }
    main_state = snapshot(model, place)

    # Each extra budget: its decay, branched from the stable state saved when the main run passed its decay start.
    budget_models = {}
    for budget, n in sorted(branches.items()):
        state = read_checkpoint(checkpoints / f"stable-{budget}.pt", model, place.device)
        if state["fingerprint"] != fingerprint:
            raise RuntimeError(f"{checkpoints}/stable-{budget}.pt belongs to other params or inputs; remove it")
        _, b_positions, b_losses = restore_checkpoint(state, model, optimizer)
        for step in tqdm(range(decay_start(n, cfg.decay_fraction), n), desc=f"decay of budget {budget}",
                         unit="step", disable=not place.main):
            set_learning_rate(optimizer, step, n, cfg)
            loss, _, _ = train_step(model, teacher, optimizer, plan[step], docs, feature_dim, cfg, params.alpha,
                                    place)
            b_positions += plan[step].positions
            b_losses.append(loss)
        metrics.setdefault("budgets", {})[str(budget)] = {"steps": n, "positions": b_positions,
                                                          "final_loss": tail_mean(b_losses)}
        budget_models[budget] = snapshot(model, place)

    if place.main:
        print(f"trained in {time.time() - t0:.1f} s", file=sys.stderr)
        with atomic_dir(out) as tmp:
            save_model(model, main_state, tmp)
            tokenizer.save_pretrained(tmp / "lm")
            for budget, weights in budget_models.items():
                save_model(model, weights, tmp / "budgets" / str(budget))
                tokenizer.save_pretrained(tmp / "budgets" / str(budget) / "lm")
            # Stage II resumes from here: the main run's state before its decay (model, optimizer, data position).
            os.replace(checkpoints / "pre_decay.pt", tmp / "pre_decay.pt")
        write_json(metrics_path, metrics)
        for path in [ckpt_path, *(checkpoints / f"stable-{b}.pt" for b in branches)]:
            path.unlink(missing_ok=True)  # the finished models supersede them
    if place.world_size > 1:
        dist.barrier()
    return metrics
