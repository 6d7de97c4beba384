"""Paper scale without a GPU: the dry-run estimate, `salad fetch` into prepare, and `salad check-profile`."""

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from salad.cli import main
from salad.config import ConfigError, load_params, params_from_dict
from salad.stages.check_params import check_names
from salad.scale.corpora import read_parts
from salad.scale.estimate import Rates, estimate, lm_parameters
from salad.data.splits import PrepareError
from salad.stages.prepare import prepare

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ the estimate

def test_lm_parameters_equal_the_instantiated_model(tmp_path):
    """Counted on the meta device = counted on a real Qwen2 of the same shape, tied or not."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    t = load_params(REPO / "params" / "ci.yaml").teacher
    for tied in (True, False):
        folder = tmp_path / str(tied)
        config = Qwen2Config(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                             num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads,
                             num_key_value_heads=t.num_kv_heads, tie_word_embeddings=tied)
        model = Qwen2ForCausalLM(config)
        model.config.save_pretrained(folder)
        params = params_from_dict({"teacher": {**dataclasses.asdict(t), "pretrained": str(folder)}})
        counted = lm_parameters(params)
        assert counted["total"] == sum(p.numel() for p in model.parameters())
        assert counted["tied"] is tied and counted["tied_source"] == str(folder / "config.json")


def test_the_paper_lms_have_their_published_sizes():
    """Qwen2.5-3B: 3.09B parameters (tied); Qwen2.5-7B: 7.61B untied, 7.07B if its projection were tied."""
    three = lm_parameters(load_params(REPO / "params" / "paper-3b.yaml"))
    seven = lm_parameters(load_params(REPO / "params" / "paper-7b.yaml"))
    assert abs(three["total"] / 3.09e9 - 1) < 0.005
    assert abs((seven["total"] + seven["embedding"]) / 7.61e9 - 1) < 0.005


def test_the_estimate_is_the_stated_arithmetic():
    params = load_params(REPO / "params" / "paper-3b.yaml")
    rates = Rates(natural_speech_hours=1000.0, web_tokens=1e6, chars_per_token=5.0, gpus=8)
    e = estimate(params, rates)
    s = 5.0 * params.evaluate.speech_frames_per_char / 12.5
    assert e["audio_hours"]["broad_synthetic"] == pytest.approx(1e6 * s / 3600)
    assert e["audio_hours"]["active_synthetic"] == pytest.approx(0.1 * 1000 * 4)  # largest budget x hours x 4 γ
    hours = e["audio_hours"]
    assert e["disk_bytes"]["audio"] == pytest.approx((1000 + hours["synthesized"]) * 24000 * 2 * 3600)
    assert e["disk_bytes"]["features"] == pytest.approx(hours["encoded"] * 12.5 * 512 * 2 * 3600)
    # the grid: 10 cells of 12B positions, each with decays of 20 % of its budgets branched off
    assert e["positions"]["grid"] == pytest.approx(10 * (12e9 + 0.2 * 30e9))
    assert e["positions"]["stage2"] == pytest.approx(12 * 1.9e9)
    n = e["parameters"]["lm"] + e["parameters"]["adapter"] * params.train.speech_probability
    assert e["train_flops"] == pytest.approx(8 * n * e["positions"]["total"])
    assert e["gpu_hours"]["training"] == pytest.approx(e["train_flops"] / (989e12 * 0.4) / 3600)
    faster = estimate(params, dataclasses.replace(rates, tts_realtime=2 * rates.tts_realtime))
    assert faster["gpu_hours"]["synthesis"] == pytest.approx(e["gpu_hours"]["synthesis"] / 2)
    assert e["wall_hours"]["training"] == pytest.approx(e["gpu_hours"]["training"] / 8)


def test_estimate_prints_its_assumptions(capsys):
    assert main(["estimate", "--params", str(REPO / "params" / "paper-7b.yaml"), "--gpus", "128", "--mfu", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours (wall hours on 128 GPUs)" in out and "mfu=0.5" in out and "untied" not in out.split("LM")[0]
    with pytest.raises(ValueError, match="mfu must be at most 1"):
        Rates(mfu=1.5)


# ------------------------------------------------------------------------------------- fetch, then prepare

_VOCABULARY = ("the river runs past old mills where children play and birds sing while farmers walk home over "
               "green hills under grey clouds").split()


def _fineweb_parquet(folder: Path, n: int, words: int = 120) -> str:
    # plain lower-case words, so that prepare's family finds next words with frequency bands in them
    vocab = _VOCABULARY
    rows = [{"id": f"<urn:uuid:{i}>", "text": " ".join(vocab[(7 * i + k) % len(vocab)] + ("." if k % 12 == 11 else "")
                                                     for k in range(words)), "score": 3.0} for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / "train-00000.parquet")
    return str(folder / "train-00000.parquet")


def test_fetch_then_prepare_reads_the_fetched_corpora(tmp_path, monkeypatch):
    """`salad fetch` (a profile's corpora section, local parquet of FineWeb-Edu's columns) -> parts -> prepare."""
    raw = dict(yaml.safe_load((REPO / "params" / "ci.yaml").read_text()))
    web = _fineweb_parquet(tmp_path / "src" / "web", 40)
    mix = _fineweb_parquet(tmp_path / "src" / "mix", 5, words=50)
    raw["corpora"] = {"web": {"name": "parquet", "data_files": [web]}, "text_mix": {"name": "parquet", "data_files": [mix]},
                      "out": str(tmp_path / "corpora"), "docs_per_part": 16}
    raw["prepare"] = {**raw["prepare"], "web_corpus": str(tmp_path / "corpora" / "web"),
                      "text_mix_corpus": str(tmp_path / "corpora" / "text_mix")}
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(raw))
    params = load_params(profile)
    with pytest.raises(PrepareError, match="run `salad fetch --corpus web`"):
        prepare(params, REPO / "data" / "raw", tmp_path / "prepared")

    for corpus in ("web", "text_mix"):
        assert main(["fetch", "--params", str(profile), "--corpus", corpus]) == 0
    assert len(list((tmp_path / "corpora" / "web").glob("part-000-*.jsonl.gz"))) == 3  # 40 documents, 16 a part
    stats = prepare(params, REPO / "data" / "raw", tmp_path / "prepared")
    ids = {r["id"].rsplit("#", 1)[0] for name in ("test", "probe", "web")
           for r in map(json.loads, (tmp_path / "prepared" / f"{name}.jsonl").read_text().splitlines())}
    assert ids == {d["id"] for d in read_parts(tmp_path / "corpora" / "web")}
    mixed = [json.loads(x) for x in (tmp_path / "prepared" / "text_mix.jsonl").read_text().splitlines()]
    assert stats["text_mix"]["records"] == len(mixed) and {m["id"].rsplit("#", 1)[0] for m in mixed} == {
        f"<urn:uuid:{i}>" for i in range(5)}


def test_corpora_are_named_or_described():
    assert check_names(params_from_dict({"corpora": {"web": "fineweb-edu-10bt"}})).corpora.web == "fineweb-edu-10bt"
    with pytest.raises(ConfigError, match="corpora.web: unknown corpus 'fineweb'"):
        check_names(params_from_dict({"corpora": {"web": "fineweb"}}))
    with pytest.raises(ConfigError, match=r"corpora.text_mix: unknown CorpusSource field\(s\) \['texts'\]"):
        check_names(params_from_dict({"corpora": {"text_mix": {"name": "json", "data_files": ["a.jsonl"],
                                                              "texts": "x"}}}))
    with pytest.raises(ConfigError, match="corpora.web: corpus builder 'json' needs data_files"):
        check_names(params_from_dict({"corpora": {"web": {"name": "json"}}}))


def test_the_paper_profiles_name_the_papers_corpora():
    for name in ("paper-3b", "paper-7b"):
        p = load_params(REPO / "params" / f"{name}.yaml")
        assert p.corpora.web == "fineweb-edu-10bt" and p.corpora.natural_speech == "emilia-yodas-en"
        assert str(p.corpora.text_mix).startswith("smollm")
        assert p.prepare.web_corpus == "data/corpora/web" and p.prepare.text_mix_corpus == "data/corpora/text_mix"


# ----------------------------------------------------------------------------------------- check-profile

@pytest.mark.parametrize("profile", ["paper-3b", "paper-7b"])
def test_check_profile_list_only_prints_download_commands_the_pinned_hf_accepts(profile, capsys):
    """--list-only lists without building stand-ins and exits 0; every `hf download` it prints uses only options
    of the pinned huggingface-hub's `hf download` and names one repository."""
    import shlex
    import subprocess
    import sys

    from salad.config import load_params
    from salad.scale.check_profile import needs, runnable

    assert main(["check-profile", str(REPO / "params" / f"{profile}.yaml"), "--list-only"]) == 0
    printed = capsys.readouterr().out
    assert "[MISSING] teacher.pretrained" in printed and "stand-ins" not in printed
    hf = Path(sys.executable).parent / "hf"
    accepted = set(re.findall(r"(--[a-z-]+)", subprocess.run([str(hf), "download", "--help"], capture_output=True,
                                                            text=True, check=True).stdout))
    commands = [runnable(n.source) for n in needs(load_params(REPO / "params" / f"{profile}.yaml"))]
    downloads = [c.split(" (")[0] for c in commands if c.startswith(".venv/bin/hf download ")]
    assert len(downloads) >= 5, commands
    for command in downloads:
        words = shlex.split(command)[2:]
        flags = {w for w in words if w.startswith("--")}
        assert flags <= accepted, (command, flags - accepted)
        repo_id = words[0]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id), command
        assert f"{command}" in printed or any(command in line for line in printed.splitlines()), command


@pytest.mark.slow
def test_check_profile_runs_the_3b_profile_on_stand_ins(tmp_path, capsys):
    work = tmp_path / "work"
    with pytest.raises(SystemExit, match="missing: teacher.pretrained"):  # here nothing is downloaded: exit 1
        main(["check-profile", str(REPO / "params" / "paper-3b.yaml"), "--work", str(work),
              "--raw", str(REPO / "data" / "raw"), "--out", str(tmp_path / "report.json")])
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and set(report["stages"]) == {"prepare", "stand-ins", "teacher", "synthesize", "encode",
                                                      "train", "measure", "evaluate"}
    assert report["standin_params"]["synthesize.tts"] == "kokoro" and report["standin_params"]["encode.encoder"] == "mimi"
    need = {n["param"]: n for n in report["needs"]}
    assert not need["teacher.pretrained"]["present"]
    assert need["teacher.pretrained"]["source"] == ("hf download Qwen/Qwen2.5-3B "
                                                    "--local-dir models/Qwen2.5-3B")
    assert "kyutai/moshiko-pytorch-bf16 tokenizer-e351c8d8-checkpoint125.safetensors" in need["encode.mimi_weights"]["source"]
    assert "[MISSING] teacher.pretrained: models/Qwen2.5-3B" in printed and "profile OK on stand-ins" in printed
    assert "get it: .venv/bin/hf download Qwen/Qwen2.5-3B --local-dir models/Qwen2.5-3B" in printed
    tmp_path = work
    teacher = json.loads((tmp_path / "teacher.json").read_text())
    assert teacher["pretrained"] == str(tmp_path / "standins" / "qwen2")  # adopted through teacher.pretrained
    train = json.loads((tmp_path / "train.json").read_text())
    assert train["steps"] >= 2 and train["adapter_parameters"] > 100e6  # the paper's 12 x 960 adapter
    measured = json.loads((tmp_path / "measure.json").read_text())
    assert measured["M"] > 0 and measured["F"] >= 0
    assert (tmp_path / "features" / "speech").exists() and (tmp_path / "eval").exists()
