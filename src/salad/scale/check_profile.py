"""`salad check-profile`: validate a profile end to end on tiny stand-ins, and say what it must download.

A paper-scale profile names models this machine does not have (Qwen2.5-3B, Mimi's weights, Kokoro-82M, ...). Before
a cluster job spends GPU-hours on it, this check

1. reads the profile (every section validated on construction, unknown keys refused);
2. lists every local file or folder the profile reads, whether it is present, and where it comes from (`needs`);
3. builds a tiny stand-in of each named architecture — a Qwen2 LM with the profile's attention layout (query heads
   per key-value head) saved with `save_pretrained` and adopted through `teacher.pretrained` exactly as Qwen2.5 is,
   a random-weight Mimi loaded through moshi's own loader, a random Kokoro with a local voice and spaCy pipeline —
   and runs the pipeline's stage functions on a small slice of the shipped data with the profile's choices (TTS,
   encoder, adapter shape, α, FSDP and precision flags, the objective's spans) and tiny sizes: prepare → teacher →
   synthesize → encode → train → measure → evaluate.

What the stand-ins cannot check is said, not hidden: numbers from random weights mean nothing; the shipped text
stands in for the fetched corpora; the natural-speech ingestion of LibriHeavy/Emilia manifests and the Stage II
stages are not run here (their own tests cover them); the Whisper of the cascade is replaced by the oracle
transcript.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

from salad.config import Params, load_params
from salad.stages.check_params import check_names

__all__ = ["Need", "needs", "standin_params", "check_profile", "format_needs", "format_report", "runnable"]

MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"


@dataclass(frozen=True)
class Need:
    """One local file or folder a profile reads."""

    param: str
    path: str
    source: str
    """Where it comes from: the command that puts it at `path`."""

    @property
    def present(self) -> bool:
        return Path(self.path).exists()


def _hub(repo: str, path: str, files: str | None = None) -> str:
    what = f" {files}" if files else ""
    return f"hf download {repo}{what} --local-dir {path}"


def needs(params: Params) -> list[Need]:
    """Every model, voice and corpus file `params` reads from local paths, with how to get it there."""
    s, e, n, t = params.synthesize, params.encode, params.natural, params.teacher
    out: list[Need] = []
    if t.pretrained:
        out.append(Need("teacher.pretrained", t.pretrained, _hub(f"Qwen/{Path(t.pretrained).name}", t.pretrained)))
    if s.tts == "kokoro":
        home = Path(s.kokoro_model).parent if s.kokoro_model else Path("models/kokoro")
        for param in ("kokoro_model", "kokoro_config", "kokoro_voice"):
            path = Path(getattr(s, param) or "")
            rel = path.relative_to(home) if path.is_relative_to(home) else Path(path.name)
            out.append(Need(f"synthesize.{param}", str(path), _hub("hexgrad/Kokoro-82M", str(home), str(rel))))
        if s.kokoro_spacy_model:
            out.append(Need("synthesize.kokoro_spacy_model", s.kokoro_spacy_model,
                            "python -m spacy download en_core_web_sm, then copy the installed package's en_core_web_sm-* folder there"))
    if (params.evaluate.second_voice or "").endswith(".pt"):
        voice = params.evaluate.second_voice
        out.append(Need("evaluate.second_voice", voice,
                        _hub("hexgrad/Kokoro-82M", str(Path(voice).parent.parent), f"voices/{Path(voice).name}")))
    if e.encoder == "mimi" and e.mimi_weights:
        out.append(Need("encode.mimi_weights", e.mimi_weights,
                        _hub("kyutai/moshiko-pytorch-bf16", str(Path(e.mimi_weights).parent), MIMI_FILE)))
    if params.evaluate.asr_model:
        out.append(Need("evaluate.asr_model", params.evaluate.asr_model,
                        _hub("openai/whisper-large-v3", params.evaluate.asr_model)))
    if params.active.embedder and not params.active.embedder.startswith("gt-"):
        out.append(Need("active.embedder", params.active.embedder,
                        f"hf download {params.active.embedder} (a hub name is read from the local HF "
                        f"cache; or set active.embedder to a local folder)"))
    if n.manifest:
        out.append(Need("natural.manifest", n.manifest,
                        "LibriHeavy cuts with word alignments: https://huggingface.co/datasets/pkufool/libriheavy "
                        "(and the LibriLight audio it points to); or `salad fetch` for a corpus of the profile"))
    if n.ctc_model:
        out.append(Need("natural.ctc_model", n.ctc_model, _hub("facebook/wav2vec2-base-960h", n.ctc_model) + " (or any Wav2Vec2ForCTC checkpoint)"))
    return out


def _qwen2_standin(params: Params, folder: Path, texts: list[str]) -> Path:
    """A tiny random Qwen2 with the profile's query heads per key-value head, and a byte-level BPE tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from salad.model.teacher import save_tokenizer, train_tokenizer

    t = params.teacher
    group = t.num_heads // t.num_kv_heads
    tokenizer = train_tokenizer(texts, 512)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=16 * group, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2 * group, num_key_value_heads=2,
                         max_position_embeddings=t.context, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        Qwen2ForCausalLM(config).save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


def _small_splits(params: Params) -> Params:
    # the shipped text stands in for the fetched corpora (their ingestion has its own tests: tests/scale/test_corpora.py)
    return dataclasses.replace(params, prepare=dataclasses.replace(
        params.prepare, doc_words=20, test_docs=2, probe_docs=2, speech_docs=4, mmsu_per_category=1,
        family_items=1, agreement_per_form=1, world_people=4, world_demonstrated=1, web_corpus=None,
        text_mix_corpus=None))


def standin_params(params: Params, models: dict[str, str]) -> Params:
    """`params` with its choices kept and its sizes cut to a slice that runs in under a minute on 2 CPU cores (paper-3b:
    46 s wall, measured on an idle machine)."""
    r = dataclasses.replace
    s = params.synthesize
    kokoro = s.tts == "kokoro"
    synthesize = r(s, broad_docs=1, workers=1, shard_docs=8, speech_voices=s.speech_voices[:1],
                   speech_rates=s.speech_rates[:1],
                   **({"kokoro_model": models["model"], "kokoro_config": models["config"],
                       "kokoro_voice": models["voice"], "kokoro_spacy_model": models["spacy_model"]} if kokoro else {}))
    second = params.evaluate.second_voice
    if second and second.endswith(".pt"):
        second = models["voice"]
    encode = r(params.encode, workers=1, shard_docs=8,
               **({"mimi_weights": models["mimi"]} if params.encode.encoder == "mimi" else {}))
    return r(
        _small_splits(params),
        teacher=r(params.teacher, pretrained=models["lm"], context=min(params.teacher.context, 256)),
        synthesize=synthesize,
        encode=encode,
        train=r(params.train, batch_size=2, micro_batch_size=1, max_len=96, tokens=190, budgets=(), warmup_steps=1,
                log_every=1, checkpoint_every=2, kl_chunk=64),
        measure=r(params.measure, layouts=1, batch_size=2),
        evaluate=r(params.evaluate, tasks=("storycloze",), items=1, shots=0, second_voice=second, asr_model=None),
        phones=r(params.phones, docs=4, heldout_docs=1, epochs=1),
        active=r(params.active, category_tasks=None),
    )


def check_profile(profile: str | Path, work: str | Path, raw: str | Path = "data/raw") -> dict:
    """Validate `profile` on stand-ins in `work` (created; reusable); return the report `format_report` prints."""
    from salad.stages.encode import encode
    from salad.stages.evaluate import evaluate
    from salad.stages.measure import measure
    from salad.stages.phones import train_phones
    from salad.stages.prepare import prepare
    from salad.stages.synthesize import synthesize
    from salad.stages.teacher import train_teacher
    from salad.stages.train import train

    params = check_names(load_params(profile))
    work, raw = Path(work).resolve(), Path(raw).resolve()
    report: dict = {"profile": str(profile), "needs": [dataclasses.asdict(x) | {"present": x.present}
                                                       for x in needs(params)], "stages": {}}
    root = work / "root"  # evaluate and synthesize read <root>/data/raw/benchmarks and <root>/data/prepared
    (root / "data").mkdir(parents=True, exist_ok=True)
    if not (root / "data" / "raw").exists():
        os.symlink(raw, root / "data" / "raw", target_is_directory=True)
    prepared = root / "data" / "prepared"

    def stage(name, run):
        t0 = time.perf_counter()
        result = run()
        report["stages"][name] = {"seconds": round(time.perf_counter() - t0, 2), "result": result}
        return result

    models: dict[str, str] = {}
    stage("prepare", lambda: _summary(prepare(_small_splits(params), raw, prepared)))

    def build():
        from salad.storage.atomic import read_jsonl

        texts = [rec["text"] for rec in read_jsonl(prepared / "pretrain.jsonl")][:400]
        models["lm"] = str(_qwen2_standin(params, work / "standins" / "qwen2", texts))
        if params.synthesize.tts == "kokoro":
            from salad.scale.kokoro_standin import build_kokoro_standin
            models.update(build_kokoro_standin(work / "standins" / "kokoro", seed=params.seed))
        if params.encode.encoder == "mimi":
            from salad.scale.mimi_standin import build_random_mimi_checkpoint
            models["mimi"] = str(build_random_mimi_checkpoint(work / "standins" / "mimi" / MIMI_FILE,
                                                              seed=params.seed, clusters=16, iters=2))
        return sorted(models)
    stage("stand-ins", build)
    p = standin_params(params, models)
    report["standin_params"] = {"teacher.pretrained": p.teacher.pretrained, "synthesize.tts": p.synthesize.tts,
                                "encode.encoder": p.encode.encoder}
    teacher, speech, features, student = work / "teacher", work / "speech", work / "features", work / "student"
    stage("teacher", lambda: train_teacher(p, prepared, teacher, work / "live" / "teacher", work / "teacher.json"))
    stage("synthesize", lambda: _summary(synthesize(p, prepared, root, speech)))
    phones = work / "phones" if p.encode.encoder == "phones" else None
    if phones is not None:
        stage("phones", lambda: _summary(train_phones(p, prepared, phones, work / "live" / "phones",
                                                      work / "phones.json")))
    stage("encode", lambda: _summary(encode(p.encode, speech, phones, features)))
    stage("train", lambda: _summary(train(p, teacher, prepared, speech, features, student, work / "live" / "train",
                                          work / "train.json", work / "checkpoints")))
    stage("measure", lambda: _summary(measure(p, teacher, student, speech, features, work / "measure.json")))
    stage("evaluate", lambda: _summary(evaluate(p, teacher, student, root, features, work / "eval",
                                                work / "evaluate.json", speech=speech)))
    report["ok"] = True
    return report


def _summary(result) -> dict | None:
    """A stage's returned summary, flattened to its top-level scalars (the report stays a page long)."""
    if not isinstance(result, dict):
        return None
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}


def format_needs(needs: list[Need], profile: str | Path) -> str:
    """What the profile reads from local paths, present or MISSING, each missing one with the command that gets it
    (run from the project root: the tools are the pinned ones in .venv/bin)."""
    lines = [f"profile {profile}", "", "local files it reads:"]
    for n in needs:
        lines.append(f"  [{'present' if n.present else 'MISSING'}] {n.param}: {n.path}")
        if not n.present:
            lines.append(f"      get it: {runnable(n.source)}")
    if not needs:
        lines.append("  none")
    return "\n".join(lines)


def runnable(source: str) -> str:
    """A download command as it runs from the project root with nothing activated (`hf` and `python` of .venv)."""
    for tool in ("hf ", "python "):
        if source.startswith(tool):
            return f".venv/bin/{source}"
    return source


def format_report(report: dict) -> str:
    """The check's report as text: what to download, then every stage with its time."""
    needs_ = [Need(n["param"], n["path"], n["source"]) for n in report["needs"]]
    lines = format_needs(needs_, report["profile"]).splitlines()
    lines += ["", "stages on tiny stand-ins (random weights: the numbers mean nothing, the code paths are the profile's):"]
    for name, s in report["stages"].items():
        lines.append(f"  {name:<11} ok  {s['seconds']:>7.2f} s")
    lines.append("")
    missing = sum(not n["present"] for n in report["needs"])
    lines.append(f"profile OK on stand-ins; {missing} of {len(report['needs'])} local files missing"
                 if report.get("ok") else "profile check did not finish")
    return "\n".join(lines)
