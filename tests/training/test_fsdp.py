"""FSDP training (train.fsdp, salad.training.fsdp): the paper-scale path, dry-run on CPU with gloo on a tiny Qwen2 stand-in.

The world here is built directly (a tiny random Qwen2 teacher, synthetic word-timed documents with random features),
not by the pipeline, so that the real `salad.stages.train.train` runs in seconds: in this process (one rank, FSDP over a
mesh of one) and under torchrun with two gloo processes (FSDP over a mesh of two), against the unsharded
one-process run as the reference.
"""

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml

import salad.stages.train as train_module
from salad.model.teacher import load_teacher
from salad.storage.atomic import write_jsonl
from salad.config import ConfigError, TrainConfig, load_params
from salad.speech.encoders import FRAME_RATE
from salad.model.speech_lm import SpeechAdaptedLM
from salad.storage.store import build_store
from salad.training.loop import Dist, build_optimizer, init_distributed, train_step
from salad.training.plan import PlannedBatch

REPO = Path(__file__).resolve().parents[2]
FEATURE_DIM = 8
TINY = dict(adapter_layers=2, adapter_width=16, adapter_heads=2, adapter_kv_heads=1, adapter_mlp=32,
            warmup_steps=2, batch_size=4, micro_batch_size=1, max_len=96, tokens=2600, budgets=[1600],
            kl_chunk=64, log_every=1, checkpoint_every=3)
"""Two micro-batches per rank on two ranks, two adapter blocks (checkpointed), a budget branch, checkpoints."""

WORDS = re.findall(r"\S+", "The quick brown fox, which can't sleep, jumps over 13 lazy dogs. Meanwhile the old "
                   "farmer's wife counts 2,500 eggs and sells them at the market for three dollars each!")


class _Docs:
    """Synthetic documents for salad.storage.store: speech (word times) or features (random frames) of each."""

    def __init__(self, texts: list[str], kind: str):
        self.texts, self.kind = texts, kind

    def __len__(self):
        return len(self.texts)

    def doc_id(self, i):
        return f"d{i}"

    def run(self, i):
        text = self.texts[i]
        rng = np.random.default_rng(i)
        words, t = [], 0.1
        for m in re.finditer(r"\S+", text):
            d = float(rng.uniform(0.15, 0.45))
            words.append([m.group(), m.start(), m.end(), t, t + d])
            t += d + 0.05
        n_frames = math.ceil(t * FRAME_RATE) + 1
        if self.kind == "speech":
            return {"id": self.doc_id(i), "text": text, "words": words}, np.zeros(n_frames, np.int16)
        features = rng.standard_normal((n_frames, FEATURE_DIM)).astype(np.float16)
        return {"id": self.doc_id(i), "n_frames": n_frames}, features


def _texts(n: int, n_words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[j % len(WORDS)] for j in range(k, k + n_words)) for k in rng.integers(0, 500, n)]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory, teacher_dir):
    """teacher/, prepared/web.jsonl, speech/speech, features/speech and a params file of the ci profile, tiny."""
    root = tmp_path_factory.mktemp("fsdp_world")
    speech = _texts(8, 30, seed=1)
    build_store(_Docs(speech, "speech"), root / "speech" / "speech", "tiny", shard_docs=4)
    build_store(_Docs(speech, "features"), root / "features" / "speech", "tiny", shard_docs=4)
    write_jsonl(root / "prepared" / "web.jsonl", [{"id": f"w{i}", "text": t} for i, t in enumerate(_texts(8, 40, 2))])
    raw = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())
    raw["alpha"] = 0.5  # KL and NLL both in the loss, so that the compared losses are O(1)
    raw["train"].update(TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root, teacher_dir


@pytest.fixture(autouse=True)
def _one_rank_group_is_closed():
    """A one-process FSDP run opens a process group of one rank: close it after each test."""
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def params_of(root: Path, **train):
    params = load_params(root / "params.yaml")
    return dataclasses.replace(params, train=dataclasses.replace(params.train, **train))


def run(world, params, name, stop_after=None):
    root, teacher = world
    return train_module.train(params, teacher, root / "prepared", root / "speech", root / "features", root / name,
                              root / f"live_{name}", root / f"{name}.json", root / f"ckpt_{name}",
                              stop_after=stop_after)


def loss_curve(live_dir: Path) -> list[float]:
    rows = (live_dir / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]
    return [float(r.split("\t")[-1]) for r in rows]


def weights(path: Path) -> dict:
    return SpeechAdaptedLM.load(path).state_dict()


def same_format(a: Path, b: Path) -> None:
    """Two saved model directories hold the same files, configs and tensor names, shapes and dtypes."""
    from safetensors.torch import load_file

    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        if f.suffix == ".json":
            assert json.loads((a / f).read_text()) == json.loads((b / f).read_text()), f
        elif f.suffix == ".safetensors":
            x, y = load_file(a / f), load_file(b / f)
            assert {k: (v.shape, v.dtype) for k, v in x.items()} == {k: (v.shape, v.dtype) for k, v in y.items()}


def same_checkpoint_format(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a["next_step"] == b["next_step"]
    assert {k: (v.shape, v.dtype) for k, v in a["model"].items()} == \
        {k: (v.shape, v.dtype) for k, v in b["model"].items()}
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]  # rates, decay, and the parameter indices of each group
    assert {i: {k: (v.shape, v.dtype) for k, v in s.items()} for i, s in oa["state"].items()} == \
        {i: {k: (v.shape, v.dtype) for k, v in s.items()} for i, s in ob["state"].items()}


def close(a: dict, b: dict, atol: float) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), rtol=0, atol=atol) for k in a)


@pytest.fixture(scope="module")
def reference(tiny_world):
    """The unsharded one-process run: what every FSDP run is compared with."""
    root, _ = tiny_world
    metrics = run(tiny_world, params_of(root), "reference")
    return metrics, loss_curve(root / "live_reference"), weights(root / "reference")


def test_the_fsdp_options_are_checked_on_construction():
    with pytest.raises(ConfigError, match="train.precision.*'fp32' or 'bf16'"):
        TrainConfig(fsdp=True, precision="fp16")
    with pytest.raises(ConfigError, match="train.precision: needs train.fsdp: true"):
        TrainConfig(precision="bf16")
    with pytest.raises(ConfigError, match="train.activation_checkpointing: needs train.fsdp: true"):
        TrainConfig(activation_checkpointing=True)
    TrainConfig(fsdp=True, activation_checkpointing=True, precision="bf16")
    for name in ("paper-3b", "paper-7b"):
        t = load_params(REPO / "params" / f"{name}.yaml").train
        assert (t.fsdp, t.activation_checkpointing, t.precision) == (True, True, "bf16"), name


def test_one_process_fsdp_trains_as_the_unsharded_path_and_saves_the_same_files(tiny_world, reference, monkeypatch):
    root, _ = tiny_world
    shard, units = train_module.shard_for_training, []

    def spy(model, teacher, cfg, place):
        shard(model, teacher, cfg, place)
        units.append(sum(isinstance(m, torch.distributed.fsdp.FSDPModule) for m in model.modules()))

    monkeypatch.setattr(train_module, "shard_for_training", spy)
    metrics = run(tiny_world, params_of(root, fsdp=True), "one_fsdp")
    assert units == [1 + 2]  # the root and one unit per decoder layer of the tiny Qwen2

    ref_metrics, ref_curve, ref_weights = reference
    assert metrics == ref_metrics
    assert loss_curve(root / "live_one_fsdp") == pytest.approx(ref_curve, rel=1e-6)
    assert close(weights(root / "one_fsdp"), ref_weights, atol=1e-6)
    same_format(root / "one_fsdp", root / "reference")
    budget = str(TINY["budgets"][0])
    assert close(weights(root / "one_fsdp" / "budgets" / budget), weights(root / "reference" / "budgets" / budget),
                 atol=1e-6)
    same_checkpoint_format(torch.load(root / "one_fsdp" / "pre_decay.pt", weights_only=False),
                           torch.load(root / "reference" / "pre_decay.pt", weights_only=False))


def test_an_untied_head_as_in_qwen2_5_7b(tiny_world, tokenizer, tmp_path):
    """Qwen2.5-7B's head is its own matrix (3B's is the embeddings): the student's is sharded in the root unit, the
    teacher's stays whole."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    root, _ = tiny_world
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "untied")
    tokenizer.save_pretrained(tmp_path / "untied")
    world = (root, tmp_path / "untied")
    plain = run(world, params_of(root, budgets=()), "untied")
    sharded = run(world, params_of(root, fsdp=True, budgets=()), "untied_fsdp")
    assert sharded == plain
    same_format(root / "untied_fsdp", root / "untied")
    a, b = weights(root / "untied_fsdp"), weights(root / "untied")
    assert close(a, b, atol=1e-6) and not torch.equal(a["lm.lm_head.weight"], a["lm.model.embed_tokens.weight"])


def test_activation_checkpointing_recomputes_every_layer_and_changes_nothing(tiny_world, monkeypatch):
    import salad.training.fsdp

    root, _ = tiny_world
    recomputed = []

    def counting_checkpoint(fn, *args, **kwargs):
        recomputed.append(fn.func.__qualname__)
        return torch.utils.checkpoint.checkpoint(fn, *args, **kwargs)

    plain = run(tiny_world, params_of(root, fsdp=True, budgets=()), "no_ac")
    monkeypatch.setattr(salad.training.fsdp, "checkpoint", counting_checkpoint)
    checkpointed = run(tiny_world, params_of(root, fsdp=True, activation_checkpointing=True, budgets=()), "ac")
    # the 2 LM layers on every micro-batch, the 2 adapter layers on every micro-batch with speech
    micro = plain["steps"] * TINY["batch_size"] // TINY["micro_batch_size"]
    assert recomputed.count("Qwen2DecoderLayer.forward") == 2 * micro
    assert 0 < recomputed.count("LlamaDecoderLayer.forward") <= 2 * micro
    assert checkpointed == plain
    assert loss_curve(root / "live_ac") == loss_curve(root / "live_no_ac")
    a, b = weights(root / "ac"), weights(root / "no_ac")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_computes_in_bf16_and_keeps_fp32_master_weights(tiny_world, reference):
    root, _ = tiny_world
    run(tiny_world, params_of(root, fsdp=True, precision="bf16"), "bf16")
    curve, ref_curve = loss_curve(root / "live_bf16"), reference[1]
    assert np.isfinite(curve).all() and len(curve) == len(ref_curve)
    deviation = max(abs(a - b) / b for a, b in zip(curve, ref_curve))
    assert 1e-6 < deviation < 2e-2  # computed in bf16 (one-rank fp32 FSDP equals the reference), and close
    saved = weights(root / "bf16")
    assert {v.dtype for v in saved.values()} == {torch.float32}
    assert close(saved, reference[2], atol=5e-3)
    state = torch.load(root / "bf16" / "pre_decay.pt", weights_only=False)
    assert {v.dtype for s in state["optimizer"]["state"].values() for k, v in s.items() if k != "step"} == \
        {torch.float32}


def test_a_killed_fsdp_run_resumes_bit_for_bit(tiny_world, capsys):
    root, _ = tiny_world
    params = params_of(root, fsdp=True, activation_checkpointing=True)
    full = run(tiny_world, params, "fsdp_full")
    every = TINY["checkpoint_every"]
    with pytest.raises(KeyboardInterrupt):
        run(tiny_world, params, "fsdp_resumed", stop_after=every + 1)
    capsys.readouterr()
    resumed = run(tiny_world, params, "fsdp_resumed")
    assert f"at step {every} of {full['steps']}" in capsys.readouterr().err
    assert resumed == full
    assert loss_curve(root / "live_fsdp_resumed")[-1] == loss_curve(root / "live_fsdp_full")[-1]
    a, b = weights(root / "fsdp_full"), weights(root / "fsdp_resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fsdp_refuses_a_batch_the_ranks_cannot_split_evenly():
    place = Dist(0, 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="batch_size 4 is not a multiple of the 3 processes"):
        train_module.shard_for_training(None, None, TrainConfig(fsdp=True, batch_size=4), place)


@pytest.mark.slow
def test_the_paper_training_settings_step_a_sharded_tiny_qwen2(teacher_dir, tokenizer):
    """paper-3b's train section as it is (FSDP, activation checkpointing, bf16, the paper's 122M adapter) on the
    tiny Qwen2 stand-in: one optimizer step in one process."""
    from conftest import make_doc
    from salad.data.interleave import draw_layout, interleave
    from salad.model.speech_lm import AdapterConfig

    cfg = dataclasses.replace(load_params(REPO / "params" / "paper-3b.yaml").train, micro_batch_size=1)
    assert (cfg.fsdp, cfg.activation_checkpointing, cfg.precision) == (True, True, "bf16")
    teacher = load_teacher(teacher_dir)
    adapter = AdapterConfig(feature_dim=FEATURE_DIM, lm_hidden=teacher.config.hidden_size, layers=cfg.adapter_layers,
                            width=cfg.adapter_width, heads=cfg.adapter_heads, kv_heads=cfg.adapter_kv_heads,
                            mlp=cfg.adapter_mlp, max_frames=cfg.max_len)
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter)
    place = Dist(0, 1, torch.device("cpu"))
    train_module.shard_for_training(model, teacher, cfg, place)
    optimizer = build_optimizer(model, cfg)
    docs = [make_doc(tokenizer, seed=s, frames_dim=FEATURE_DIM)[0] for s in range(2)]
    docs = [dataclasses.replace(d, features=np.random.default_rng(0).standard_normal(d.features.shape, np.float32))
            for d in docs]
    rng = np.random.default_rng(0)
    planned = PlannedBatch("speech", [interleave(d, draw_layout(d.cut_points(), d.n_words, rng),
                                                              cfg.max_len) for d in docs], [0, 1])
    dtypes = []
    model.lm.model.layers[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    before = model.adapter.output_proj.weight.full_tensor().clone()
    loss, kl, nll = train_step(model, teacher, optimizer, planned, (docs, []), FEATURE_DIM, cfg, 0.5,
                                            place)
    assert np.isfinite([loss, kl, nll]).all() and kl > 0
    assert dtypes == [torch.bfloat16] * 2  # one forward per micro-batch, in bf16 (the recomputation is not hooked)
    after = model.adapter.output_proj.weight
    assert after.dtype == torch.float32 and not torch.equal(before, after.full_tensor())


# ---------------------------------------------------------------------------------------------------------------
# Two gloo processes under torchrun: FSDP over a mesh of two


@pytest.fixture(scope="module")
def two_ranks(tiny_world, tmp_path_factory):
    """One torchrun launch of this file on two processes (`_two_rank_runs`): process start-up is the cost."""
    root, teacher = tiny_world
    out = tmp_path_factory.mktemp("two_ranks")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for name, train in (("fp32", dict(fsdp=True, activation_checkpointing=True)),
                        ("bf16", dict(fsdp=True, activation_checkpointing=True, precision="bf16"))):
        (out / f"{name}.yaml").write_text(yaml.safe_dump({**raw, "train": {**raw["train"], **train}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
           str(root), str(teacher), str(out)]
    # its own session, so that a hang (ranks waiting in mismatched collectives) ends with all its processes
    launch = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        _, stderr = launch.communicate(timeout=1800)  # a hang guard, far above the expected time
    except subprocess.TimeoutExpired:
        os.killpg(launch.pid, signal.SIGKILL)
        _, stderr = launch.communicate()
        pytest.fail(f"the two ranks hung (mismatched collectives?):\n{stderr[-5000:]}")
    assert launch.returncode == 0, stderr[-5000:]
    return out, stderr


def _two_rank_runs(root: Path, teacher: Path, out: Path) -> None:
    """Under torchrun: an FSDP run through the CLI (fp32, activation checkpointing), the same killed and resumed,
    a bf16 run, and one step whose ranks see different micro-batches."""
    from salad.cli import main

    place = init_distributed()
    shard = train_module.shard_for_training

    def recording_shard(model, teacher_model, cfg, where):
        shard(model, teacher_model, cfg, where)
        embed = model.lm.model.embed_tokens.weight
        if where.main:
            (out / "sharding.json").write_text(json.dumps({"world": where.world_size, "rows": embed.shape[0],
                                                           "local_rows": embed.to_local().shape[0]}))

    train_module.shard_for_training = recording_shard

    def cli_train(profile: str, name: str, *extra: str) -> None:
        main(["train", "--params", str(out / f"{profile}.yaml"), "--teacher", str(teacher), "--prepared",
              str(root / "prepared"), "--speech", str(root / "speech"), "--features", str(root / "features"),
              "--out", str(out / name), "--live", str(out / f"live_{name}"), "--metrics", str(out / f"{name}.json"),
              "--checkpoints", str(out / f"ckpt_{name}"), *extra])

    cli_train("fp32", "fp32")
    try:
        cli_train("fp32", "resumed", "--stop-after", str(TINY["checkpoint_every"] + 1))
    except KeyboardInterrupt:
        (out / "killed").touch()
    cli_train("fp32", "resumed")
    cli_train("bf16", "bf16")
    _mixed_step(root, teacher, out, place)


def _mixed_step(root: Path, teacher_dir: Path, out: Path, place) -> None:
    """One optimizer step in which rank 0's micro-batches have speech and rank 1's have none (and one has no masked
    position): sharded over the two ranks, and unsharded in one process; rank 0 writes how far apart they end."""
    from transformers import AutoTokenizer

    from salad.data.documents import load_aligned
    from salad.training.fsdp import full_state
    from salad.data.interleave import interleave, text_only
    from salad.model.speech_lm import AdapterConfig

    cfg = dataclasses.replace(load_params(root / "params.yaml").train, fsdp=True)
    docs = load_aligned(root / "speech" / "speech", root / "features" / "speech",
                        AutoTokenizer.from_pretrained(teacher_dir))

    def with_speech(doc):
        cuts = doc.cut_points()
        return interleave(doc, [("text", 0, cuts[2] - 1), ("speech", cuts[2], cuts[5] - 1),
                                ("text", cuts[5], doc.n_words - 1)], cfg.max_len)

    # ranks take sequences r, r + 2: rank 0 [0, 2] with speech, rank 1 [1, 3] without, 3 with no masked position
    seqs = [with_speech(docs[0]), text_only(docs[1], cfg.max_len), with_speech(docs[2]), text_only(docs[3], 1)]
    planned = PlannedBatch("speech", seqs, [0, 1, 2, 3])
    assert seqs[3].target.max() < 0 and not seqs[1].speech_spans and seqs[0].speech_spans

    def fresh(sharded: bool):
        torch.manual_seed(0)
        teacher = load_teacher(teacher_dir)
        adapter = AdapterConfig(feature_dim=FEATURE_DIM, lm_hidden=teacher.config.hidden_size,
                                layers=cfg.adapter_layers, width=cfg.adapter_width, heads=cfg.adapter_heads,
                                kv_heads=cfg.adapter_kv_heads, mlp=cfg.adapter_mlp, max_frames=cfg.max_len)
        model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter)
        if sharded:
            train_module.shard_for_training(model, teacher, cfg, place)
        return model, teacher, build_optimizer(model, cfg)

    one = Dist(0, 1, torch.device("cpu"))
    model, teacher, optimizer = fresh(sharded=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = train_step(model, teacher, optimizer, planned, (docs, []), FEATURE_DIM, cfg, 0.5, one)
    sharded_model, sharded_teacher, sharded_optimizer = fresh(sharded=True)
    sharded_losses = train_step(sharded_model, sharded_teacher, sharded_optimizer, planned, (docs, []),
                                           FEATURE_DIM, cfg, 0.5, place)
    after = full_state(sharded_model.state_dict(), keep=place.main)
    if place.main:
        unsharded = model.state_dict()
        (out / "mixed.json").write_text(json.dumps({
            "losses": losses, "sharded_losses": sharded_losses,  # the step's (loss, KL, NLL)
            "max_diff": max(float((after[k] - unsharded[k]).abs().max()) for k in unsharded),
            "adapter_moved": float((unsharded["adapter.output_proj.weight"]
                                    - before["adapter.output_proj.weight"]).abs().max())}))


@pytest.mark.slow
def test_two_fsdp_ranks_shard_the_model_and_reproduce_the_one_process_run(tiny_world, reference, two_ranks):
    out, _ = two_ranks
    sharding = json.loads((out / "sharding.json").read_text())
    assert sharding["world"] == 2 and sharding["local_rows"] == math.ceil(sharding["rows"] / 2)

    ref_metrics, ref_curve, ref_weights = reference
    metrics = json.loads((out / "fp32.json").read_text())
    assert metrics["steps"] == ref_metrics["steps"] and metrics["positions"] == ref_metrics["positions"]
    curve = loss_curve(out / "live_fp32")
    assert len(curve) == ref_metrics["steps"] and curve == pytest.approx(ref_curve, rel=1e-5)
    assert close(weights(out / "fp32"), ref_weights, atol=1e-5)
    root, _ = tiny_world
    same_format(out / "fp32", root / "reference")
    budget = str(TINY["budgets"][0])
    assert close(weights(out / "fp32" / "budgets" / budget), weights(root / "reference" / "budgets" / budget),
                 atol=1e-5)
    same_checkpoint_format(torch.load(out / "fp32" / "pre_decay.pt", weights_only=False),
                           torch.load(root / "reference" / "pre_decay.pt", weights_only=False))


@pytest.mark.slow
def test_two_fsdp_ranks_resume_a_killed_run_bit_for_bit(two_ranks):
    out, stderr = two_ranks
    assert (out / "killed").exists()
    assert f"resuming from {out / 'ckpt_resumed' / 'last.pt'} at step {TINY['checkpoint_every']}" in stderr
    assert json.loads((out / "resumed.json").read_text()) == json.loads((out / "fp32.json").read_text())
    a, b = weights(out / "fp32"), weights(out / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_fsdp_ranks_in_bf16_stay_close_to_fp32(two_ranks, reference):
    out, _ = two_ranks
    curve = loss_curve(out / "live_bf16")
    assert np.isfinite(curve).all() and curve == pytest.approx(reference[1], rel=2e-2)
    assert close(weights(out / "bf16"), reference[2], atol=5e-3)


@pytest.mark.slow
def test_ranks_with_and_without_speech_in_one_step_update_as_one_process(two_ranks):
    out, _ = two_ranks
    mixed = json.loads((out / "mixed.json").read_text())
    assert mixed["adapter_moved"] > 1e-4  # the adapter learned from rank 0's speech alone
    assert mixed["sharded_losses"] == pytest.approx(mixed["losses"], rel=1e-6)
    assert mixed["max_diff"] < 1e-6


if __name__ == "__main__":  # the torchrun side of the `two_ranks` fixture
    _two_rank_runs(*map(Path, sys.argv[1:]))
