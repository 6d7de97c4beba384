"""Shared-context scoring against one forward per choice, on HellaSwag (issue 5, target >= 2x faster).

The harness runs each context once and scores all of its choices as one batch on the repeated KV cache
(salad.evaluation.scoring.score_continuations); the naive baseline runs context + choice once per choice
(salad.evaluation.scoring.score_continuations_without_cache). Both are timed in the same run on the same items, and
their scores compared.
The model has the default world's teacher shape with random weights: speed does not depend on the weights.

    python benchmarks/scoring_shared_context.py --items 100 --shots 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from salad.data.tokens import doc_start_id
from salad.evaluation.scoring import score_continuations, score_continuations_without_cache, text_requests
from salad.evaluation.tasks import fewshot_prefix, load_items
from salad.model.teacher import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--shots", type=int, default=3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_grad_enabled(False)

    items = load_items("hellaswag", "continuation", ROOT, n=args.items, seed=0)
    prefix = fewshot_prefix("hellaswag", "continuation", ROOT, args.shots, 0, exclude_ids={i.id for i in items})
    tokenizer = train_tokenizer([prefix + i.context + " " + " ".join(i.choices) for i in items] * 4, args.vocab)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=int(args.hidden * 2.6875),
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True)).eval()
    requests = []
    for item in items:
        ctx, conts = text_requests(tokenizer, prefix + item.context, item.choices, [doc_start_id(tokenizer)])
        requests.append((model.get_input_embeddings()(torch.tensor(ctx)), conts))

    timings, scores = {}, {}
    for name, fn in (("per_choice", lambda e, c: score_continuations_without_cache(model, e, c)),
                     ("shared_context", lambda e, c: score_continuations(model, e, c))):
        fn(*requests[0])  # warm-up
        t0 = time.perf_counter()
        scores[name] = [fn(e, c) for e, c in requests]
        timings[name] = time.perf_counter() - t0
    diff = max(abs(a - b) for sa, sb in zip(scores["per_choice"], scores["shared_context"]) for a, b in zip(sa, sb))
    print(json.dumps({
        "items": len(items), "shots": args.shots,
        "mean_context_tokens": sum(e.shape[0] for e, _ in requests) / len(requests),
        "seconds": timings, "speedup": timings["per_choice"] / timings["shared_context"],
        "max_abs_score_difference": diff,
    }, indent=2))


if __name__ == "__main__":
    main()
