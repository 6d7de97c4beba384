"""Peak memory and time of the chunked masked objective against the naive dense KL (docs/design.md §4, issue 4).

Setting of the paper: vocabulary 151,936 (Qwen2.5), one sequence of 2,048 positions, all positions masked (the worst
case). The naive baseline forms full fp32 logits for student and teacher, log-softmaxes both and sums the
divergence and the NLL and lets autograd differentiate. The chunked variant is the objective used in training,
salad.training.objective.distillation_objective: it forms logits for `chunk` rows at a time and computes each chunk's gradient
in the forward pass (fused linear loss, no recomputation). Both compute the same loss and gradients (checked here).
Each variant runs in its own process so that peak memory is its own: `ru_maxrss` on CPU, `max_memory_allocated` on
CUDA. The divergence is the paper's forward KL unless --divergence names another (train.divergence).

    python benchmarks/kl_memory.py                   # CPU, hidden 64
    python benchmarks/kl_memory.py --device cuda --hidden 2048
    python benchmarks/kl_memory.py --divergence jsd --beta 0.5
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def inputs(args, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    h_s = (torch.randn(args.length, args.hidden, generator=g) / args.hidden ** 0.5).to(device).requires_grad_(True)
    h_t = (torch.randn(args.length, args.hidden, generator=g) / args.hidden ** 0.5).to(device)
    w_s = (torch.randn(args.vocab, args.hidden, generator=g) * 0.02).to(device).requires_grad_(True)
    w_t = (torch.randn(args.vocab, args.hidden, generator=g) * 0.02).to(device)
    y = torch.randint(0, args.vocab, (args.length,), generator=g).to(device)
    return h_s, h_t, w_s, w_t, y


def naive(h_s, h_t, w_s, w_t, y, alpha, divergence, beta):
    from salad.training.objective import divergence_rows

    log_p = F.log_softmax((h_s @ w_s.T).float(), -1)
    with torch.no_grad():
        log_q = F.log_softmax((h_t @ w_t.T).float(), -1)
    div = divergence_rows(log_q, log_p, divergence, beta).sum()
    nll = F.nll_loss(log_p, y, reduction="sum")
    return (alpha * div + (1 - alpha) * nll) / y.shape[0]


def chunked(h_s, h_t, w_s, w_t, y, alpha, chunk, divergence, beta):
    from salad.training.objective import distillation_objective

    s_head = torch.nn.Linear(h_s.shape[1], w_s.shape[0], bias=False, device=h_s.device)
    t_head = torch.nn.Linear(h_s.shape[1], w_s.shape[0], bias=False, device=h_s.device)
    s_head.weight = torch.nn.Parameter(w_s)
    t_head.weight = torch.nn.Parameter(w_t, requires_grad=False)
    loss, _ = distillation_objective(h_s, h_t, y, s_head, t_head, alpha, y.shape[0], chunk=chunk,
                                     divergence=divergence, beta=beta)
    return loss, s_head.weight


def worker(args) -> dict:
    device = torch.device(args.device)
    h_s, h_t, w_s, w_t, y = inputs(args, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        h_s.grad = None
        if args.variant == "naive":
            loss = naive(h_s, h_t, w_s, w_t, y, args.alpha, args.divergence, args.beta)
            w = w_s
        else:
            loss, w = chunked(h_s, h_t, w_s, w_t, y, args.alpha, args.chunk, args.divergence, args.beta)
        w.grad = None
        loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    seconds = (time.perf_counter() - t0) / args.repeats
    return {"variant": args.variant, "loss": loss.item(), "peak_bytes": peak, "seconds": seconds,
            "grad_h": h_s.grad.double().sum().item(), "grad_w": w.grad.double().abs().sum().item()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--divergence", choices=["forward_kl", "reverse_kl", "jsd"], default="forward_kl")
    p.add_argument("--beta", type=float, default=0.5, help="the JSD's beta, in (0, 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--variant", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        print(json.dumps(worker(args)))
        return
    results = {}
    for variant in ("naive", "chunked"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
        results[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    n, c = results["naive"], results["chunked"]
    report = {
        "setting": {k: getattr(args, k) for k in ("vocab", "length", "hidden", "chunk", "alpha", "divergence", "beta",
                                                  "device")},
        "naive": n, "chunked": c,
        "memory_ratio": c["peak_bytes"] / n["peak_bytes"],
        "time_ratio": c["seconds"] / n["seconds"],
        "same_loss": abs(c["loss"] - n["loss"]) <= 1e-4 * abs(n["loss"]),
        "same_gradients": abs(c["grad_h"] - n["grad_h"]) <= 1e-3 * max(1.0, abs(n["grad_h"]))
        and abs(c["grad_w"] - n["grad_w"]) <= 1e-3 * abs(n["grad_w"]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
