"""The baselines of Tables 3 and 5 (salad.baselines.speech_llms): every adapter on a tiny random checkpoint of its real
architecture, saved with save_pretrained and loaded through the adapter's own loading code, scores in text and speech
mode exactly what a plain forward pass of the same model gives on the same full input, inside the checkpoint's chat
template; missing folders and architectures missing from transformers are clear errors."""

import json
import math

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor

from salad.storage.atomic import read_json, read_jsonl, write_jsonl
from salad.baselines.speech_llms import (
    ANSWER, BASELINES, ArchitectureUnavailable, CascadeAdapter, Qwen25OmniAdapter, Qwen2AudioAdapter, audio_pieces,
    chat_turns, continuation_ids, evaluate_baseline, load_baseline,
)
from salad.evaluation.cascade import WhisperTranscriber
from salad.evaluation.benchmarks import context_id, eval_plan, first_items, score_text, spoken_text
from salad.analysis.published import published_value
from salad.speech.synthesis import synthesize_corpus
from salad.speech.tts import EspeakTTS, Speech, WordTime
from evaluation.test_cascade import whisper_dir  # noqa: F401  (the tiny Whisper checkpoint fixture)
from evaluation.test_benchmarks import make_params, root  # noqa: F401  (benchmark files under a temporary root)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
            "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"]
CORPUS = ("You are a helpful assistant. Question: Which gas do plants absorb from the air? Answer: carbon dioxide, "
          "oxygen, nitrogen. The story ends as the sun sets over the quiet lake and everyone goes home. ") * 3
# Qwen2-Audio-7B-Instruct's chat template (as its hub processor saves it)
QWEN2_AUDIO_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}Audio {{ audio_count.value }}: "
    "<|audio_bos|><|AUDIO|><|audio_eos|>\n{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Qwen2.5-Omni's chat template, audio and text parts (its images and videos are never used here)
OMNI_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a "
    "helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == "
    "'audio' or 'audio' in content %}<|audio_bos|><|AUDIO|><|audio_eos|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

QA_CONTEXT = "Question: Which gas do plants absorb?\nAnswer: carbon dioxide\n\nQuestion: What do fish need?\nAnswer:"
PLAIN_CONTEXT = "The sun sets over the quiet lake and"
CHOICES = ["oxygen", "carbon dioxide", "the air"]


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the Qwen chat and audio special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def text_config(vocab: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=2048)


def noise_speech(seconds: float, sample_rate: int = 24000, seed: int = 0) -> Speech:
    """Noise with a "word" every second ([i, i + 0.5] s)."""
    audio = (np.random.default_rng(seed).standard_normal(int(seconds * sample_rate)) * 0.1).astype(np.float32)
    words = [WordTime(f"w{i}", 3 * i, 3 * i + 2, float(i), i + 0.5) for i in range(math.ceil(seconds))]
    return Speech(audio, sample_rate, words)


@pytest.fixture(scope="module")
def qwen2_audio_dir(tmp_path_factory):
    """A tiny random Qwen2-Audio with its processor (2 s audio window) and the Instruct chat template."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

    path = tmp_path_factory.mktemp("qwen2_audio")
    tokenizer = chat_tokenizer()
    extractor = WhisperFeatureExtractor(feature_size=16, chunk_length=2)  # 200 frames = 2 x max_source_positions
    Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tokenizer,
                        chat_template=QWEN2_AUDIO_TEMPLATE).save_pretrained(path)
    config = Qwen2AudioConfig(
        audio_config=dict(num_mel_bins=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                          d_model=16, max_source_positions=100),
        text_config=dict(model_type="qwen2", **text_config(len(tokenizer))),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(0)
    Qwen2AudioForConditionalGeneration(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def omni_dir(tmp_path_factory):
    """A tiny random Qwen2.5-Omni checkpoint laid out as the hub's: the full model's config.json (thinker, talker,
    token2wav; audio output enabled) and weights under thinker./talker./token2wav., the tokenizer, the
    WhisperFeatureExtractor's preprocessor_config.json and the processor's chat_template.json."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    path = tmp_path_factory.mktemp("omni")
    tokenizer = chat_tokenizer()
    tokenizer.save_pretrained(path)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    thinker = dict(
        audio_config=dict(num_mel_bins=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                          d_model=16, max_source_positions=100, n_window=50, output_dim=32),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0]),
        text_config=dict(**text_config(len(tokenizer)),
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}),
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"])
    torch.manual_seed(0)
    Qwen2_5OmniForConditionalGeneration(Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)) \
        .save_pretrained(path)
    weights = load_file(path / "model.safetensors")  # the hub checkpoint also holds the speech-output modules
    weights.update({"talker.codec_head.weight": torch.zeros(4, 4), "token2wav.bigvgan.x": torch.zeros(2)})
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    config["enable_audio_output"] = True
    (path / "config.json").write_text(json.dumps(config))
    WhisperFeatureExtractor(feature_size=16, chunk_length=2).save_pretrained(path)
    (path / "chat_template.json").write_text(json.dumps({"chat_template": OMNI_TEMPLATE}))
    return path


@pytest.fixture(scope="module")
def chat_lm_dir(tmp_path_factory):
    """A tiny random Qwen2 LM whose tokenizer has a ChatML template (an instruct LM for a chat cascade)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = tmp_path_factory.mktemp("chat_lm")
    tokenizer = chat_tokenizer()
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(path)
    torch.manual_seed(1)
    Qwen2ForCausalLM(Qwen2Config(**text_config(len(tokenizer)))).save_pretrained(path)
    return path


def plain_forward_scores(model, inputs: dict, continuations: list[list[int]]) -> list[float]:
    """Sum of continuation log-probs from one ordinary forward of the model on context + continuation (the model's
    own audio merge and positions), per choice."""
    n = inputs["input_ids"].shape[1]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    out = []
    for cont in continuations:
        ids = torch.cat([inputs["input_ids"], torch.tensor([cont])], dim=1)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        out.append(float(sum(logp[n - 1 + j, t] for j, t in enumerate(cont))))
    return out


def check_exact(adapter, context, speech=None):
    """The adapter's scores are finite and equal a plain forward's; returns the inputs it built."""
    inputs, conts = adapter.inputs(context, CHOICES, speech)
    got = adapter.score_text(context, CHOICES) if speech is None else adapter.score_speech(speech, context, CHOICES)
    assert all(math.isfinite(s) for s in got) and len(got) == len(CHOICES)
    assert got == pytest.approx(plain_forward_scores(adapter.model, inputs, conts), abs=1e-5)
    return inputs, conts


def decoded(adapter, inputs) -> str:
    return adapter.tokenizer.decode(inputs["input_ids"][0].tolist())


# ---------------------------------------------------------------------------------------------------------------


def test_registry_names_the_checkpoints_and_the_paper_rows():
    assert {b.hub_id for b in BASELINES.values()} >= {
        "Qwen/Qwen2-Audio-7B-Instruct", "Qwen/Qwen2-Audio-7B", "Qwen/Qwen2.5-Omni-7B", "WillHeld/DiVA-llama-3-v0-8b",
        "THUDM/glm-4-voice-9b", "Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-7B"}
    assert {BASELINES[n].asr_hub_id for n in ("cascade-qwen2.5-3b", "cascade-qwen2.5-7b")} == {
        "openai/whisper-large-v3"}
    for b in BASELINES.values():
        assert published_value("Table 3", b.paper_row, "Avg. Acc.") is not None, b.name
        assert b.paper_hours is None  # the paper states the baselines' data sizes only in Figure 1
    assert not BASELINES["cascade-qwen2.5-3b"].chat and BASELINES["qwen2-audio-7b-instruct"].chat
    with pytest.raises(KeyError, match="known"):
        load_baseline("qwen3-audio", "/nowhere")


def test_chat_turns_give_answer_to_the_assistant():
    assert chat_turns(QA_CONTEXT) == (QA_CONTEXT[:-len("\nAnswer:")], ANSWER)
    assert chat_turns(PLAIN_CONTEXT + " ") == (PLAIN_CONTEXT, "")
    tok = chat_tokenizer()
    ctx, conts = continuation_ids(tok, "<|im_start|>assistant\n", ["oxygen", "the air"])
    assert ctx == tok("<|im_start|>assistant\n")["input_ids"]  # the header's newline stays in the context
    assert [tok.decode(c) for c in conts] == ["oxygen", "the air"]


def test_audio_is_resampled_and_cut_between_words():
    speech = noise_speech(4.7)
    pieces = audio_pieces(speech, 16000, 2.0)
    # pauses are [i + 0.5, i + 1]: cuts at 1.75 and 3.75 s
    assert [len(p) for p in pieces] == [28000, 32000, round(4.7 * 16000) - 60000]
    assert all(p.dtype == np.float32 for p in pieces)
    assert [len(p) for p in audio_pieces(Speech(speech.audio, 24000, []), 16000, 2.0)] == [32000, 32000, 11200]
    short = Speech(speech.audio[:int(4.01 * 24000)], 24000, [])  # no word times: hard cuts, a 10 ms tail dropped
    assert [len(p) for p in audio_pieces(short, 16000, 2.0)] == [32000, 32000]


@pytest.mark.parametrize("name", ["qwen2-audio-7b-instruct", "qwen2.5-omni-7b", "cascade-qwen2.5-3b"])
def test_a_missing_folder_says_what_to_download(tmp_path, name):
    hub_id = BASELINES[name].hub_id
    with pytest.raises(FileNotFoundError) as e:
        load_baseline(name, tmp_path / "absent")
    assert hub_id in str(e.value)
    assert f"hf download {hub_id} --local-dir {tmp_path / 'absent'}" in str(e.value)


@pytest.mark.parametrize("name, missing", [("diva-llama-3.1-8b", "DiVAModel"),
                                           ("glm-4-voice-9b", "ChatGLMForConditionalGeneration")])
def test_remote_code_baselines_say_what_transformers_lacks(tmp_path, name, missing):
    assert not hasattr(transformers, missing)
    with pytest.raises(ArchitectureUnavailable) as e:
        load_baseline(name, tmp_path)
    message = str(e.value)
    assert f"transformers {transformers.__version__} has no {missing}" in message
    assert "trust_remote_code" in message and "does not execute" in message and BASELINES[name].hub_id in message
    assert isinstance(e.value, NotImplementedError)


def test_qwen2_audio_scores_the_continuation_in_its_chat_template(qwen2_audio_dir):
    adapter = load_baseline("qwen2-audio-7b-instruct", qwen2_audio_dir, device="cpu")
    assert isinstance(adapter, Qwen2AudioAdapter) and adapter.chat and adapter.max_audio_s == 2.0
    inputs, conts = check_exact(adapter, QA_CONTEXT)
    text = decoded(adapter, inputs)
    user, _ = chat_turns(QA_CONTEXT)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + user
                    + "<|im_end|>\n<|im_start|>assistant\nAnswer:")
    assert [adapter.tokenizer.decode(c) for c in conts] == [" " + c for c in CHOICES]
    inputs, conts = check_exact(adapter, PLAIN_CONTEXT)  # no "Answer:": empty assistant turn, bare choices
    assert decoded(adapter, inputs).endswith("<|im_start|>assistant\n")
    assert [adapter.tokenizer.decode(c) for c in conts] == CHOICES

    speech = noise_speech(3.4)
    inputs, _ = check_exact(adapter, QA_CONTEXT, speech)
    ids = inputs["input_ids"][0].tolist()
    assert inputs["input_features"].shape[0] == 2  # 3.4 s in a 2 s window: two pieces, two audio parts
    lengths = inputs["feature_attention_mask"].sum(-1)
    assert ids.count(adapter.audio_token_id) == int((((lengths - 1) // 2 + 1 - 2) // 2 + 1).sum())
    text = adapter.tokenizer.decode([t for t in ids if t != adapter.audio_token_id])
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1: "
                    "<|audio_bos|><|audio_eos|>\nAudio 2: <|audio_bos|><|audio_eos|>\n<|im_end|>\n"
                    "<|im_start|>assistant\nAnswer:")


def test_base_qwen2_audio_is_a_plain_continuation(qwen2_audio_dir):
    adapter = load_baseline("qwen2-audio-7b", qwen2_audio_dir, device="cpu")
    assert not adapter.chat
    inputs, conts = check_exact(adapter, QA_CONTEXT)
    assert decoded(adapter, inputs) == QA_CONTEXT
    assert [adapter.tokenizer.decode(c) for c in conts] == [" " + c for c in CHOICES]
    inputs, _ = check_exact(adapter, QA_CONTEXT, noise_speech(1.5))
    ids = inputs["input_ids"][0].tolist()
    assert adapter.tokenizer.decode([t for t in ids if t != adapter.audio_token_id]) == "<|audio_bos|><|audio_eos|>"


def test_qwen25_omni_thinker_scores_the_continuation_in_its_chat_template(omni_dir):
    adapter = load_baseline("qwen2.5-omni-7b", omni_dir, device="cpu")
    assert isinstance(adapter, Qwen25OmniAdapter) and adapter.chat
    assert type(adapter.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    # every thinker weight of the checkpoint is loaded (the hub layout: thinker.model.* is the language model)
    rename = [("thinker.model.", "model.language_model."), ("thinker.lm_head.", "lm_head."), ("thinker.", "model.")]
    saved = {}
    for key, value in load_file(omni_dir / "model.safetensors").items():
        old, new = next(((o, n) for o, n in rename if key.startswith(o)), (None, None))
        if old is not None:
            saved[new + key[len(old):]] = value
    loaded = adapter.model.state_dict()
    assert set(saved) == set(loaded) and all(torch.equal(loaded[k], v) for k, v in saved.items())
    inputs, conts = check_exact(adapter, QA_CONTEXT)
    assert decoded(adapter, inputs).endswith("<|im_end|>\n<|im_start|>assistant\nAnswer:")
    assert decoded(adapter, inputs).startswith("<|im_start|>system\n")
    check_exact(adapter, PLAIN_CONTEXT)

    speech = noise_speech(3.4, seed=2)
    inputs, _ = check_exact(adapter, PLAIN_CONTEXT, speech)
    ids = inputs["input_ids"][0].tolist()
    lengths = inputs["feature_attention_mask"].sum(-1)
    assert inputs["input_features"].shape[0] == 2
    assert ids.count(adapter.audio_token_id) == int((((lengths - 1) // 2 + 1 - 2) // 2 + 1).sum())
    assert adapter.tokenizer.decode([t for t in ids if t != adapter.audio_token_id]).endswith(
        "<|im_start|>user\n<|audio_bos|><|audio_eos|><|audio_bos|><|audio_eos|><|im_end|>\n<|im_start|>assistant\n")


def test_cascade_is_the_evaluate_stages_text_scoring_of_the_transcript(teacher_dir, whisper_dir, tokenizer):
    adapter = load_baseline("cascade-qwen2.5-3b", teacher_dir, device="cpu", asr_model=whisper_dir)
    assert isinstance(adapter, CascadeAdapter) and isinstance(adapter.transcriber, WhisperTranscriber)
    context = "The quick brown fox jumps over the lazy"
    choices = ["dogs", "eggs"]
    got = adapter.score_text(context, choices)
    assert got == score_text(adapter.lm, tokenizer, context, choices)
    speech = noise_speech(2.0)
    scores = adapter.score_speech(speech, context, choices, context_id="ctx-1")
    transcript = adapter.transcripts["ctx-1"]
    assert transcript == WhisperTranscriber(whisper_dir, device="cpu").transcribe("ctx-1", context, speech).strip()
    assert scores == score_text(adapter.lm, tokenizer, transcript, choices)
    # and that is an ordinary forward of the LM on the document start, transcript and continuation
    ids = [tokenizer.convert_tokens_to_ids("<|endoftext|>")] + tokenizer(transcript)["input_ids"]
    conts = [tokenizer(transcript + " " + c)["input_ids"][len(ids) - 1:] for c in choices]
    assert scores == pytest.approx(plain_forward_scores(adapter.lm, {"input_ids": torch.tensor([ids])}, conts),
                                   abs=1e-5)


def test_cascade_with_a_chat_lm_uses_its_template(chat_lm_dir):
    adapter = load_baseline("cascade-qwen2.5-7b", chat_lm_dir, device="cpu", chat=True)
    prompt = adapter.prompt(*chat_turns(QA_CONTEXT))
    assert prompt == f"<|im_start|>user\n{chat_turns(QA_CONTEXT)[0]}<|im_end|>\n<|im_start|>assistant\nAnswer:"
    ctx, conts = continuation_ids(adapter.tokenizer, prompt, [" " + c for c in CHOICES])
    expected = plain_forward_scores(adapter.lm, {"input_ids": torch.tensor([ctx])}, conts)
    assert adapter.score_text(QA_CONTEXT, CHOICES) == pytest.approx(expected, abs=1e-5)
    # oracle transcript: the spoken context is the user turn, the assistant turn keeps "Answer:"
    spoken = adapter.score_speech(noise_speech(1.0), QA_CONTEXT, CHOICES)
    ctx, conts = continuation_ids(adapter.tokenizer, adapter.prompt(QA_CONTEXT, ANSWER), [" " + c for c in CHOICES])
    assert spoken == pytest.approx(plain_forward_scores(adapter.lm, {"input_ids": torch.tensor([ctx])}, conts),
                                   abs=1e-5)


def test_evaluate_baseline_writes_records_like_the_evaluate_stage(root, tmp_path, qwen2_audio_dir,  # noqa: F811
                                                                  teacher_dir):
    params = make_params(tasks=("obqa",), items=2, shots=0)
    items, _ = eval_plan(params, root)
    docs = {context_id(item, prefix): spoken_text(item, prefix) for _, item, prefix in items}
    synthesize_corpus(EspeakTTS(), [{"id": k, "text": v} for k, v in docs.items()], tmp_path / "speech" / "eval",
                      "eval")
    out, metrics_path = tmp_path / "eval", tmp_path / "metrics.json"
    metrics = evaluate_baseline(params, "qwen2-audio-7b-instruct", qwen2_audio_dir, root, tmp_path / "speech", out,
                                metrics_path, limit=1, device="cpu")
    records = read_jsonl(out / "qwen2-audio-7b-instruct.jsonl")
    assert len(records) == 3 * 2  # one item in each of OBQA's three formats, text and speech
    assert {r["mode"] for r in records} == {"text", "speech"}
    for r in records:
        assert set(r) == {"task", "format", "mode", "id", "label", "n_choices", "scores", "acc", "acc_norm",
                          "acc_bytes", "pred", "pred_norm", "pred_bytes", "accuracy"}
        assert r["accuracy"] == r["acc_norm"]  # OBQA's scoring convention
        assert len(r["scores"]) == r["n_choices"] and all(math.isfinite(s) for s in r["scores"])
    assert read_json(metrics_path) == json.loads(json.dumps(metrics))
    assert metrics["paper_row"] == "Qwen2-Audio-7B" and metrics["gaps"] == {}  # no backbone records given
    assert set(metrics["best"]["qwen2-audio-7b-instruct"]) == {"text", "speech"}

    # with the backbone's text records as the reference: Table 3 and Table 5 gaps
    reference = tmp_path / "backbone.jsonl"
    write_jsonl(reference, [{**r, "acc_norm": 1.0, "accuracy": 1.0} for r in records if r["mode"] == "text"])
    metrics = evaluate_baseline(params, "qwen2-audio-7b-instruct", qwen2_audio_dir, root, tmp_path / "speech", out,
                                metrics_path, limit=1, device="cpu", reference=reference, modes=("text",))
    best = metrics["best"]["qwen2-audio-7b-instruct"]["text"]
    assert metrics["gaps"]["table5"]["average"] == pytest.approx(1.0 - best["average"], abs=1e-4)
    assert "table3" not in metrics["gaps"]

    # the cascade (oracle transcript): its LM on text is the reference of its Table 3 gap
    metrics = evaluate_baseline(params, "cascade-qwen2.5-3b", teacher_dir, root, tmp_path / "speech", out,
                                metrics_path, limit=1, device="cpu")
    assert metrics["adapter"]["asr"] == "OracleTranscriber()" and set(metrics["gaps"]) == {"table3"}
    assert metrics["gaps"]["table3"]["average"] == 0.0  # the oracle transcript is the text
    scored = {context_id(item, prefix): spoken_text(item, prefix) for _, item, prefix in first_items(items, 1)}
    assert read_jsonl(out / "cascade-qwen2.5-3b_transcripts.jsonl") == [
        {"id": k, "transcript": v} for k, v in scored.items()]
