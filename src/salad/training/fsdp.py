"""Sharding the student and the frozen teacher over the torchrun processes for FSDP training (`train.fsdp`).

At 3B/7B the unsharded path does not fit: every rank would hold the whole student, its gradients and its AdamW
states (7B in fp32: 28 + 28 + 56 GB) and the teacher. With `train.fsdp` the models are sharded with FSDP2
(`torch.distributed.fsdp.fully_shard`): each rank keeps 1/W of every parameter, gradient and optimizer state and
all-gathers one unit's parameters just before it runs.

Units. Student: one per decoder layer of the LM, and the root (the SpeechAdaptedLM) with the rest: the embeddings
(with the tied head), the final norm and the whole adapter. The adapter stays in the root because its forward depends
on the data (it is skipped for a micro-batch without speech): as units of its own its all-gathers would run on some
ranks and not on others, and the collectives would hang; in the root it is gathered with the embeddings at every
forward, used or not (122M parameters beside the LM's billions). Training calls `model.hidden_states`, not
`forward`, so that method is registered as the root's forward; the loss then reads the head's weight directly, which
the root keeps gathered until its backward. Teacher: one unit per decoder layer under a root `teacher.model` whose
embeddings and final norm are left whole (not sharded) on every rank, because the loss reads `teacher.lm_head`'s weight
outside any forward and, in Qwen2.5-3B, that weight is the embedding matrix.

Gradients. Each micro-batch's loss is divided by the step's global masked count, so the update is the SUM of the
ranks' gradients: FSDP's reduce-scatter is set to sum (its default averages) and to a plain SUM collective (gloo has
neither AVG nor PREMUL_SUM). Every rank must reduce-scatter the same parameters, so unused ones are reduced as zeros;
the adapter's gradient is then dropped on a step with no speech at all, which leaves it `None` as in the unsharded
path (AdamW skips it: no decay, no moment update).

Precision. `bf16`: FSDP gathers the student's parameters in bf16 and reduces gradients in fp32; the sharded master
weights, gradients and AdamW states stay fp32. The frozen teacher, which has no master weights, is held in bf16.
Activation checkpointing recomputes each decoder layer (LM and adapter) in backward: transformers checkpoints the
layer's `forward`, inside FSDP's hooks, so the recomputation finds the layer's parameters gathered.

State. Checkpoints and saved models hold full tensors, keyed and laid out as the unsharded model's `state_dict()` and
optimizer's `state_dict()`, so the files are the same with or without FSDP and either can resume the other. Gathering
is a collective (every rank calls it, rank 0 keeps the result); loading keeps each rank's shard of the full tensors,
which every rank reads from the same (memory-mapped) file.
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM

from salad.model.speech_lm import SpeechAdapter, SpeechAdaptedLM

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def shard_for_training(model: SpeechAdaptedLM, teacher, cfg, place) -> None:
    """Shard `model` (trainable) and `teacher` (frozen) in place over the ranks of `place` (a salad.training.loop.Dist).

    Call it before building the optimizer: FSDP replaces the parameters with their shards.
    """
    if cfg.batch_size % place.world_size:
        raise ValueError(f"train.batch_size {cfg.batch_size} is not a multiple of the {place.world_size} processes: "
                         f"under train.fsdp every rank must run as many micro-batches (FSDP's gathers are collectives)")
    if not dist.is_initialized():
        # one process (no torchrun): FSDP still needs a process group for its mesh, of this one rank
        dist.init_process_group("nccl" if place.device.type == "cuda" else "gloo", store=dist.HashStore(),
                                rank=0, world_size=1)
    mesh = init_device_mesh(place.device.type, (place.world_size,))
    if cfg.activation_checkpointing:
        checkpoint_layers([*model.lm.model.layers, *model.adapter.decoder.layers])

    mixed = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if cfg.precision == "bf16" else MixedPrecisionPolicy()
    for layer in model.lm.model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=mixed)
    fully_shard(model, mesh=mesh, mp_policy=mixed)
    register_fsdp_forward_method(model, "hidden_states")
    for unit in model.modules():
        if isinstance(unit, FSDPModule):
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)
            unit.set_reduce_scatter_unused_params(True)

    teacher.to(PRECISIONS[cfg.precision])
    for layer in teacher.model.layers:
        fully_shard(layer, mesh=mesh)
    whole = {p for p in teacher.model.parameters() if not isinstance(p, DTensor)}  # embeddings, final norm
    fully_shard(teacher.model, mesh=mesh, ignored_params=whole)


def checkpoint_layers(layers) -> None:
    """Recompute these transformers decoder layers in backward (their own switch, set as `gradient_checkpointing_
    enable` sets it, without that method's side effects on the model's input embeddings)."""
    for layer in layers:
        layer.gradient_checkpointing = True
        layer._gradient_checkpointing_func = functools.partial(checkpoint, use_reentrant=False)


def settle_gradients(model: SpeechAdaptedLM, step_has_speech: bool) -> None:
    """After a step's backward passes: an adapter no rank ran this step keeps no gradient (FSDP reduced zeros)."""
    if not step_has_speech:
        for p in model.adapter.parameters():
            p.grad = None


# ---------------------------------------------------------------------------------------------------------------
# Full state dicts


def full_state(state: dict, keep: bool) -> dict | None:
    """`state` (a model's or an optimizer's state_dict) with every sharded tensor gathered whole, copied to the CPU.

    A collective: every rank calls it on its own state, in the same order. Only where `keep` (rank 0, which writes
    the files) is the result built; elsewhere it returns None. Tensors that share storage (a head tied to the
    embeddings) stay one tensor, as `torch.save` of the unsharded state dict keeps them.
    """
    copies: dict[tuple, torch.Tensor] = {}

    def whole(value):
        if isinstance(value, dict):
            return {k: whole(v) for k, v in value.items()}
        if isinstance(value, list):
            return [whole(v) for v in value]
        if not isinstance(value, torch.Tensor):
            return value
        full = value.full_tensor() if isinstance(value, DTensor) else value
        if not keep:
            return None
        local = value.to_local() if isinstance(value, DTensor) else value
        if local.numel() == 0:
            return full.detach().to("cpu", copy=True)
        key = (local.untyped_storage().data_ptr(), local.storage_offset(), tuple(value.shape), value.dtype)
        if key not in copies:
            copies[key] = full.detach().to("cpu", copy=True)
        return copies[key]

    gathered = whole(state)
    return gathered if keep else None


def _shard_like(value, like):
    """This rank's shard of the full tensor `value`, placed as the sharded `like` (no communication: every rank
    holds `value`). The shard is a copy, not a view that would keep the whole tensor (or the mapped file) alive."""
    if isinstance(like, DTensor) and isinstance(value, torch.Tensor) and value.shape == like.shape:
        return distribute_tensor(value.detach(), like.device_mesh, like.placements, src_data_rank=None).clone()
    return value


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                    optimizer_state: dict) -> None:
    """Load full state dicts (as `full_state` or the unsharded path writes them) into a sharded model and its
    optimizer: each rank keeps its shard."""
    live = model.state_dict()
    model.load_state_dict({k: _shard_like(v, live.get(k)) for k, v in model_state.items()})
    # the optimizer's state is keyed by each parameter's index in its groups, in order
    params = [p for group in optimizer.param_groups for p in group["params"]]
    states = {i: {k: _shard_like(v, params[i]) for k, v in s.items()} for i, s in optimizer_state["state"].items()}
    optimizer.load_state_dict({**optimizer_state, "state": states})


def unsharded_copy(model: SpeechAdaptedLM, weights: dict) -> SpeechAdaptedLM:
    """A plain SpeechAdaptedLM of `model`'s configuration holding the full `weights` (from `full_state`), to be
    saved as the unsharded model is saved. Built on the meta device: no memory beyond `weights` themselves."""
    with torch.device("meta"):
        copy = SpeechAdaptedLM(AutoModelForCausalLM.from_config(model.lm.config), SpeechAdapter(model.adapter.config))
    copy.load_state_dict(weights, assign=True)
    copy.lm.tie_weights()  # a tied head shares the embeddings' Parameter again, as after from_pretrained
    return copy
