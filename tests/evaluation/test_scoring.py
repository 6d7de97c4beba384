"""Log-likelihood scoring (docs/design.md §7): the shared-context batched scorer equals one full forward per choice,
text requests follow lm-evaluation-harness's split, and acc / acc_norm / acc_bytes match hand-computed values."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from salad.evaluation.scoring import ContextTooLong, accuracy_metrics, score_continuations, text_requests

DOC = "<|doc|>"
SENTENCES = [
    "Question: What do plants need to grow?\nAnswer: sunlight and water",
    "The following are multiple choice questions (with answers) about biology.",
    "A man is sitting on a roof. He starts pulling up roofing on a roof.",
    "My friends all love to go to the club to dance. The next weekend, I stayed home.",
    "A. once\nB. twice\nC. 24 times\nD. 365 times\nAnswer: A",
]


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[DOC], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=DOC, eos_token=DOC)


def make_model(vocab: int, attn: str, max_positions: int = 64) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions)
    config._attn_implementation = attn
    return Qwen2ForCausalLM(config).eval()


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request, tokenizer):
    return make_model(len(tokenizer), request.param)


def full_forward_scores(model, context_embeds, continuations):
    """Reference: one forward over context + continuation per choice, no cache."""
    table = model.get_input_embeddings()
    out = []
    with torch.no_grad():
        for c in continuations:
            ids = torch.tensor(c)
            seq = torch.cat([context_embeds, table(ids)])[None]
            logp = torch.log_softmax(model(inputs_embeds=seq).logits[0].float(), dim=-1)
            t = context_embeds.shape[0]
            out.append(sum(float(logp[t - 1 + j, tok]) for j, tok in enumerate(c)))
    return out


def test_batched_scoring_equals_full_forwards_on_text(model, tokenizer):
    ctx, conts = text_requests(tokenizer, "Question: What do plants need to grow?\nAnswer:",
                               ["sunlight and water", "A", "the club to dance on a roof with friends", "roof"],
                               prefix_ids=[tokenizer.convert_tokens_to_ids(DOC)])
    assert len({len(c) for c in conts}) > 2
    embeds = model.get_input_embeddings()(torch.tensor(ctx))
    got = score_continuations(model, embeds, conts)
    assert got == pytest.approx(full_forward_scores(model, embeds, conts), abs=1e-4)


def test_batched_scoring_equals_full_forwards_on_speech_like_embeddings(model):
    torch.manual_seed(1)
    embeds = torch.randn(23, 32)
    conts = [[5, 9, 11, 3, 7], [2], [40, 41], [8, 8, 8]]
    got = score_continuations(model, embeds, conts)
    assert got == pytest.approx(full_forward_scores(model, embeds, conts), abs=1e-4)
    single = score_continuations(model, embeds, [[2], [40]])
    assert single == pytest.approx(full_forward_scores(model, embeds, [[2], [40]]), abs=1e-4)


def test_scores_are_log_probabilities(model):
    embeds = torch.randn(5, 32)
    vocab = model.config.vocab_size
    total = torch.tensor(score_continuations(model, embeds, [[v] for v in range(vocab)])).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-4)


def test_trailing_space_moves_to_the_continuation(tokenizer):
    def tok(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    context, choices = "Question: What do plants need to grow?\nAnswer: ", ["sunlight and water", "A"]
    ctx, conts = text_requests(tokenizer, context, choices, prefix_ids=[])
    assert ctx == tok(context.rstrip())
    for choice, cont in zip(choices, conts):
        assert ctx + cont == tok(context + " " + choice)
        assert tokenizer.decode(cont).startswith("  ")
    plain, plain_conts = text_requests(tokenizer, context.rstrip(), choices, prefix_ids=[7])
    assert plain == [7] + ctx
    for choice, cont in zip(choices, plain_conts):
        assert ctx + cont == tok(context.rstrip() + " " + choice)
        assert tokenizer.decode(cont) == " " + choice


class GreedyTokenizer:
    """Longest-match tokenizer with a token that spans the context/continuation boundary ("a b")."""

    vocab = ["a b", "a", "b", "c", " "]

    def __call__(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):
            j = max((v for v in self.vocab if text.startswith(v, i)), key=len)
            ids.append(self.vocab.index(j))
            i += len(j)
        return {"input_ids": ids}


def test_boundary_merge_follows_lm_eval_whole_encode_split():
    # lm-eval: context_enc = tok("a") = [a]; whole = tok("a bc") = ["a b", "c"]; continuation = whole[1:] = ["c"].
    tok = GreedyTokenizer()
    ctx, conts = text_requests(tok, "a", ["bc"], prefix_ids=[])
    assert ctx == [tok.vocab.index("a")] and conts == [[tok.vocab.index("c")]]
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        text_requests(tok, "a", ["b"], prefix_ids=[])


def test_empty_context_uses_the_prefix():
    tok = GreedyTokenizer()
    ctx, conts = text_requests(tok, "", ["b"], prefix_ids=[99])
    assert ctx == [99] and conts == [[4, 2]]
    with pytest.raises(ValueError, match="nothing to predict"):
        text_requests(tok, "  ", ["b"], prefix_ids=[])


def test_accuracy_metrics_hand_computed():
    # scores / chars: -2/1 = -2.0 vs -6.5/13 = -0.5 -> acc picks 0, acc_norm picks 1.
    m = accuracy_metrics([-2.0, -6.5], ["A", "longer answer"], label=1)
    assert m == {"acc": 0.0, "acc_norm": 1.0, "acc_bytes": 1.0, "pred": 0, "pred_norm": 1, "pred_bytes": 1,
                 "accuracy": 1.0}  # the headline: acc_norm unless the task states another
    assert accuracy_metrics([-2.0, -6.5], ["A", "longer answer"], label=1, metric="acc")["accuracy"] == 0.0
    # "éé": 2 chars, 4 bytes; "abc": 3 chars, 3 bytes. chars: -1.5 vs -1.33 -> 1; bytes: -0.75 vs -1.33 -> 0.
    m = accuracy_metrics([-3.0, -4.0], ["éé", "abc"], label=1)
    assert m == {"acc": 0.0, "acc_norm": 1.0, "acc_bytes": 0.0, "pred": 0, "pred_norm": 1, "pred_bytes": 0,
                 "accuracy": 1.0}
    m = accuracy_metrics([-1.0, -1.0, -5.0], ["x", "y", "z"], label=0)
    assert m["pred"] == 0 and m["acc"] == 1.0  # ties go to the first choice, as np.argmax
    with pytest.raises(ValueError):
        accuracy_metrics([-1.0], ["a", "b"], label=0)
    with pytest.raises(ValueError):
        accuracy_metrics([-1.0, -2.0], ["a", "b"], label=2)


def test_context_too_long():
    model = make_model(50, "sdpa", max_positions=16)
    embeds = torch.randn(12, 32)
    assert len(score_continuations(model, embeds, [[1, 2, 3, 4, 5], [6]])) == 2  # 12 + 5 - 1 = 16 fits
    with pytest.raises(ContextTooLong, match="17 positions.*16") as e:
        score_continuations(model, embeds, [[1, 2, 3, 4, 5, 6], [6]])
    assert (e.value.length, e.value.limit) == (17, 16)


def test_empty_continuation_is_rejected(model):
    with pytest.raises(ValueError):
        score_continuations(model, torch.randn(3, 32), [[1], []])


class NoCache(torch.nn.Module):
    """A causal LM that returns no KV cache: the scorer must fall back to one full forward per choice."""

    def __init__(self, lm):
        super().__init__()
        self.lm, self.config = lm, lm.config

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def forward(self, **kwargs):
        out = self.lm(**kwargs)
        out.past_key_values = None
        return out


def test_models_without_a_cache_are_scored_per_choice(model):
    embeds = torch.randn(7, 32)
    conts = [[5, 9, 11], [2], [40, 41]]
    got = score_continuations(NoCache(model), embeds, conts)
    assert got == pytest.approx(full_forward_scores(model, embeds, conts), abs=1e-4)


# --- parity with lm-evaluation-harness -------------------------------------------------------------------------

def lm_eval_encode_pair(tokenizer, context: str, continuation: str, bos: list[int]) -> tuple[list[int], list[int]]:
    """lm-eval's HFLM._encode_pair, written out independently: trailing context whitespace moves to the front of the
    continuation, the whole string is encoded and split at the token length of the context (BOS, when the model
    adds one, is part of the context encoding)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    context_enc = bos + tokenizer(context, add_special_tokens=False)["input_ids"]
    whole_enc = bos + tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    return context_enc, whole_enc[len(context_enc):]


def lm_eval_loglikelihood(model, context_enc: list[int], continuation_enc: list[int]) -> float:
    """lm-eval's HFLM._loglikelihood_tokens for one request: the model reads (context + continuation)[:-1] as token
    ids in one forward, and the last len(continuation) logits score the continuation."""
    inp = torch.tensor((context_enc + continuation_enc)[:-1])[None]
    with torch.no_grad():
        logits = torch.log_softmax(model(inp).logits[0].float(), dim=-1)[-len(continuation_enc):]
    return float(logits.gather(-1, torch.tensor(continuation_enc)[:, None]).sum())


PARITY_CASES = [
    # (few-shot prefix + context, choices); the task's target_delimiter " " goes in front of every choice
    ("Question: What do plants need to grow?\nAnswer:", ["sunlight and water", "A", "roof"]),
    ("Question: What do plants need to grow?\nAnswer: sunlight and water\n\nQuestion: Where is he?\nA. once\n"
     "B. twice\nAnswer:", ["A", "B"]),
    ("A man is sitting on a roof. He ", ["starts pulling up roofing.", "dances"]),  # trailing space moves
    ("My friends all love to go to the club to dance.\n", ["The next weekend, I stayed home.", "é à 365"]),
]


@pytest.mark.parametrize("context,choices", PARITY_CASES)
def test_text_scores_match_lm_eval_harness(tokenizer, context, choices):
    """The harness's text path (text_requests + score_continuations, as evaluate.score_text calls them with the
    document-start token in lm-eval's BOS role) gives lm-eval's log-likelihoods and hence its acc / acc_norm."""
    model = make_model(len(tokenizer), "sdpa", max_positions=128)
    bos = [tokenizer.convert_tokens_to_ids(DOC)]
    ctx_ids, conts = text_requests(tokenizer, context, choices, prefix_ids=bos)
    ours = score_continuations(model, model.get_input_embeddings()(torch.tensor(ctx_ids)), conts)
    reference = []
    for choice, cont in zip(choices, conts):
        context_enc, continuation_enc = lm_eval_encode_pair(tokenizer, context, " " + choice, bos)
        assert (ctx_ids, cont) == (context_enc, continuation_enc)
        reference.append(lm_eval_loglikelihood(model, context_enc, continuation_enc))
    assert ours == pytest.approx(reference, abs=1e-4)
    # lm-eval's multiple_choice metrics: acc = argmax ll, acc_norm = argmax ll / len(choice) in characters
    m = accuracy_metrics(ours, choices, label=0)
    assert m["pred"] == int(torch.tensor(reference).argmax())
    assert m["pred_norm"] == int(torch.tensor([r / len(c) for r, c in zip(reference, choices)]).argmax())
