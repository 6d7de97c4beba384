"""The data stages of active selection (paper Section 4, Appendix A.8; docs/design.md §6): from D_web to D_active.

    active-embed        sentence embeddings of the selection pool (a seeded sample of D_web, or all of it), of the
                        held-out probe documents and of D_speech's texts (for the domain plots)
    active-cluster      balanced k-means of the pool into K clusters; each cluster's probe documents and its
                        distinctive terms (c-TF-IDF); how D_web, D_speech and the probes spread over the clusters
    active-probes       the probe documents in the fixed voice, encoded (pre-synthesized speech, as the paper's)
    active-misalignment M(c) = L_DIST of the Stage I model on the probe documents of cluster c
    active-select       for one gamma: P_target ∝ P_web·M^gamma, the draw order, its speech, and for every budget the
                        draw-order prefix whose audio first reaches it: D_active

Rules fixed here where the paper is silent:

- Probes. Cluster c's probes are `probes_per_cluster` documents: first the held-out documents of probe.jsonl whose
  nearest centroid is c (a seeded choice when there are more), then, when fewer are held out, documents of c's own
  pool drawn with the seed, which then leave the selection pool (a probe is never selected for training).
- Budget in audio. A budget is a fraction of D_speech's audio duration. The paper's loop (draw a cluster, draw a
  document, synthesize it, add it, until the budget is spent) needs real durations, known only after synthesis. So
  the draw order (salad.selection.target, one seeded sampler) is planned on estimated durations (the probe audio's
  seconds per word) for (1 + plan_margin) x the largest budget, synthesized, and each budget's D_active is the
  shortest prefix of that order whose real audio reaches the budget: exactly the loop's result, at the price of
  synthesizing at most the margin in excess. Too small a margin is an error, never a shorter D_active. Because the
  order is one sampler's, a smaller budget's D_active is a prefix of a larger one's, as if the loop had stopped
  earlier; gammas share the seed (common random numbers), so uniform and active differ only in P_target.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from salad.selection.target import estimated_duration, p_target, p_web, select_documents
from salad.storage.atomic import atomic_dir, read_jsonl, write_json, write_jsonl
from salad.data.batch import collate
from salad.selection.terms import cluster_terms
from salad.selection.clustering import balanced_kmeans
from salad.config import Params
from salad.data.documents import load_aligned, load_speech_index
from salad.selection.embed import embed_texts, load_embedder
from salad.stages.encode import encode_corpus, make_encoder
from salad.data.interleave import draw_layout, interleave
from salad.model.speech_lm import SpeechAdaptedLM
from salad.stages.synthesize import make_tts, synthesize_corpus
from salad.stages.train import load_teacher, loss_sums
from salad.random_streams import stream

__all__ = ["pool_sample", "nearest_centroid", "choose_probes", "audio_seconds", "seconds_per_word",
           "budget_prefix", "embed_stage", "cluster_stage", "probes_stage", "misalignment_stage", "select_stage",
           "active_ids"]

EMBEDDED = ("pool", "probe", "speech")
"""The texts embedded by active-embed: the selection pool, the held-out probes, D_speech (domain plots only)."""


def pool_sample(web: list[dict], n: int | None, seed: int) -> list[dict]:
    """The selection pool: `n` documents of D_web drawn without replacement with `seed`, in D_web order (all if None)."""
    if n is None:
        return list(web)
    if n > len(web):
        raise ValueError(f"active.pool_docs is {n} but D_web (web.jsonl) has only {len(web)} documents")
    chosen = np.sort(stream(seed, "selection-pool").choice(len(web), size=n, replace=False))
    return [web[i] for i in chosen]


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of each row of x: argmax of x·mu − |mu|²/2."""
    mu = centroids.astype(np.float64)
    return np.argmax(x.astype(np.float64) @ mu.T - 0.5 * (mu ** 2).sum(axis=1), axis=1)


def choose_probes(held_out_cluster: np.ndarray, pool_labels: np.ndarray, k: int, per_cluster: int,
                  seed: int) -> list[tuple[int, str, int]]:
    """The probes of every cluster as (cluster, "held_out" | "pool", index into probe.jsonl or the pool).

    Held-out documents nearest to c first (a seeded choice of `per_cluster` when there are more), topped up with a
    seeded choice of c's pool documents. A cluster that cannot reach `per_cluster` is an error.
    """
    rng = stream(seed, "probe-choice")
    probes = []
    for c in range(k):
        held = np.flatnonzero(held_out_cluster == c)
        take = np.sort(rng.choice(held, size=per_cluster, replace=False)) if len(held) > per_cluster else held
        probes += [(c, "held_out", int(i)) for i in take]
        missing = per_cluster - len(take)
        if missing:
            members = np.flatnonzero(pool_labels == c)
            if len(members) <= missing:
                raise ValueError(f"cluster {c} has {len(take)} held-out probes and {len(members)} pool documents: "
                                 f"too few for {per_cluster} probes and a pool left to select from; lower "
                                 f"active.probes_per_cluster or active.clusters")
            probes += [(c, "pool", int(i)) for i in np.sort(rng.choice(members, size=missing, replace=False))]
    return probes


def audio_seconds(store_dir: Path) -> dict[str, float]:
    """Duration in seconds of every document of a speech store, by id."""
    return {r["id"]: r["num_samples"] / r["sample_rate"] for r in load_speech_index(store_dir)}


def seconds_per_word(store_dir: Path) -> float:
    """Seconds of audio per whitespace-separated word of the store's texts (the voice's rate, pauses included)."""
    records = load_speech_index(store_dir)
    words = sum(len(r["text"].split()) for r in records)
    if not words:
        raise ValueError(f"{store_dir}: no words to measure a speaking rate on")
    return sum(r["num_samples"] / r["sample_rate"] for r in records) / words


def budget_prefix(seconds: list[float], budget_seconds: float) -> int:
    """Length of the shortest prefix of `seconds` whose sum reaches `budget_seconds` (the loop of docs/design.md §6)."""
    if budget_seconds <= 0:
        return 0
    total = np.cumsum(seconds)
    n = int(np.searchsorted(total, budget_seconds, side="left")) + 1
    if n > len(seconds):
        raise ValueError(f"the synthesized draw order holds {total[-1] if len(total) else 0:.1f} s, short of the budget "
                         f"of {budget_seconds:.1f} s: raise active.plan_margin (the estimate of durations was low)")
    return n


def embed_stage(params: Params, prepared: Path, out: Path) -> dict:
    """Embed the selection pool, the probe documents and D_speech; writes <name>.jsonl (id, text) and <name>.npy."""
    cfg = params.active
    texts = {"pool": pool_sample(read_jsonl(Path(prepared) / "web.jsonl"), cfg.pool_docs, params.seed),
             "probe": read_jsonl(Path(prepared) / "probe.jsonl"),
             "speech": read_jsonl(Path(prepared) / "speech.jsonl")}
    model = load_embedder(cfg.embedder)
    stats = {"embedder": cfg.embedder, "dim": model.get_embedding_dimension()}
    with atomic_dir(out) as tmp:
        for name in EMBEDDED:
            records = [{"id": r["id"], "text": r["text"]} for r in texts[name]]
            vectors = embed_texts([r["text"] for r in records], model, batch_size=cfg.embed_batch_size)
            write_jsonl(tmp / f"{name}.jsonl", records)
            np.save(tmp / f"{name}.npy", vectors)
            stats[name] = len(records)
        write_json(tmp / "stats.json", stats)
    return stats


def _load(embeddings: Path, name: str) -> tuple[list[dict], np.ndarray]:
    return read_jsonl(Path(embeddings) / f"{name}.jsonl"), np.load(Path(embeddings) / f"{name}.npy")


def cluster_stage(params: Params, embeddings: Path, out: Path, metrics_path: Path) -> dict:
    """Balanced k-means of the pool, probes per cluster, c-TF-IDF terms, and the spread of each corpus."""
    cfg = params.active
    pool, x = _load(embeddings, "pool")
    held, held_x = _load(embeddings, "probe")
    _, speech_x = _load(embeddings, "speech")
    labels, centroids = balanced_kmeans(x, cfg.clusters, params.seed, iters=cfg.kmeans_iters)
    held_cluster = nearest_centroid(held_x, centroids)
    speech_cluster = nearest_centroid(speech_x, centroids)
    probes = choose_probes(held_cluster, labels, cfg.clusters, cfg.probes_per_cluster, params.seed)
    probe_records = [{"id": (held if source == "held_out" else pool)[i]["id"],
                      "text": (held if source == "held_out" else pool)[i]["text"], "cluster": c, "source": source,
                      "index": i} for c, source, i in probes]
    terms = cluster_terms([r["text"] for r in pool], labels, cfg.clusters, cfg.terms)
    with atomic_dir(out) as tmp:
        np.save(tmp / "labels.npy", labels)
        np.save(tmp / "centroids.npy", centroids)
        write_jsonl(tmp / "probes.jsonl", probe_records)
        write_json(tmp / "terms.json", terms)

    def share(assigned: np.ndarray) -> list[float]:
        return (np.bincount(assigned, minlength=cfg.clusters) / max(len(assigned), 1)).round(6).tolist()

    metrics = {"clusters": cfg.clusters, "pool_docs": len(pool), "sizes": np.bincount(labels).tolist(),
               "terms": terms,
               "probes": {"held_out": sum(p[1] == "held_out" for p in probes),
                          "from_pool": sum(p[1] == "pool" for p in probes)},
               "spread": {"web": share(labels), "speech": share(speech_cluster), "held_out_probes": share(held_cluster)}}
    write_json(metrics_path, metrics)
    return metrics


def probes_stage(params: Params, clusters: Path, out: Path) -> dict:
    """The probe documents spoken in the fixed voice (out/speech) and encoded (out/features)."""
    records = [{"id": r["id"], "text": r["text"]} for r in read_jsonl(Path(clusters) / "probes.jsonl")]
    syn, enc = params.synthesize, params.encode
    speech = synthesize_corpus(make_tts(syn), records, Path(out) / "speech", "probes", workers=syn.workers,
                               shard_docs=syn.shard_docs)
    features = encode_corpus(make_encoder(enc), Path(out) / "speech", Path(out) / "features", "probes",
                             workers=enc.workers, shard_docs=enc.shard_docs)
    return {"speech": speech, "features": features}


@torch.no_grad()
def misalignment_stage(params: Params, teacher_dir: Path, model_dir: Path, clusters: Path, probes: Path,
                       metrics_path: Path) -> dict:
    """M(c): the Stage I model's L_DIST (nats per masked position) on cluster c's probes, over `measure.layouts`
    seeded span layouts, with the standard error over layouts."""
    cfg, tcfg = params.active, params.train
    torch.manual_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = load_teacher(teacher_dir)
    model = SpeechAdaptedLM.load(model_dir).eval()
    cluster_of = {r["id"]: r["cluster"] for r in read_jsonl(Path(clusters) / "probes.jsonl")}
    docs = load_aligned(Path(probes) / "speech", Path(probes) / "features", tokenizer)
    missing = sorted(set(range(cfg.clusters)) - {cluster_of[d.id] for d in docs})
    if missing:
        raise ValueError(f"clusters {missing} have no probe with speech (the synthesizer skipped them all): "
                         f"M(c) is undefined there; see {probes}/speech/stats")
    feature_dim = docs[0].features.shape[1]
    kl = np.zeros((params.measure.layouts, cfg.clusters))
    count = np.zeros_like(kl)
    for layout_id in range(params.measure.layouts):
        for lo in tqdm(range(0, len(docs), params.measure.batch_size), desc=f"M(c) layout {layout_id}", unit="batch"):
            chunk = docs[lo:lo + params.measure.batch_size]
            for j, d in enumerate(chunk):  # one document at a time: its sums belong to its cluster
                rng = stream(params.seed, "probe-layout", layout_id, lo + j)
                seq = interleave(d, draw_layout(d.cut_points(), d.n_words, rng, tcfg.text_span_words,
                                                tcfg.speech_span_words), tcfg.max_len)
                sums = loss_sums(model, teacher, collate([seq], [d.token_ids], [d.features], feature_dim),
                                 tcfg.kl_chunk)
                kl[layout_id, cluster_of[d.id]] += float(sums.kl)
                count[layout_id, cluster_of[d.id]] += sums.count
    per_layout = kl / np.maximum(count, 1)
    m = per_layout.mean(axis=0)
    se = per_layout.std(axis=0, ddof=1) / np.sqrt(len(per_layout)) if len(per_layout) > 1 else np.full_like(m, np.nan)
    labels = np.load(Path(clusters) / "labels.npy")
    metrics = {"model": str(model_dir), "M": m.tolist(), "M_se": se.tolist(),
               "positions": count.sum(axis=0).astype(int).tolist(),
               "p_web": p_web(labels, cfg.clusters).tolist(), "layouts": params.measure.layouts}
    write_json(metrics_path, metrics)
    return metrics


def select_stage(params: Params, gamma: float, embeddings: Path, clusters: Path, misalignment: Path, probes: Path,
                 speech: Path, out: Path, metrics_path: Path) -> dict:
    """D_active of every budget for one gamma: out/speech and out/features hold the synthesized draw order,
    out/selection.json the order with real durations and each budget's prefix length."""
    cfg = params.active
    if gamma not in cfg.gammas:
        raise ValueError(f"gamma {gamma} is not one of active.gammas {list(cfg.gammas)}")
    pool, _ = _load(embeddings, "pool")
    labels = np.load(Path(clusters) / "labels.npy")
    probe_pool = {r["index"] for r in read_jsonl(Path(clusters) / "probes.jsonl") if r["source"] == "pool"}
    available = np.array([i for i in range(len(pool)) if i not in probe_pool])
    m = json.loads(Path(misalignment).read_text())
    target = p_target(p_web(labels, cfg.clusters), np.asarray(m["M"]), gamma)

    speech_seconds = sum(audio_seconds(Path(speech) / "speech").values())
    budgets = {b: b * speech_seconds for b in cfg.budgets}
    spw = seconds_per_word(Path(probes) / "speech")
    estimate = np.array([estimated_duration(pool[i]["text"], 60.0 / spw) for i in available])
    plan = (1.0 + cfg.plan_margin) * max(budgets.values())
    order = available[select_documents(labels[available], target, estimate, plan, params.seed)]

    syn, enc = params.synthesize, params.encode
    records = [{"id": pool[i]["id"], "text": pool[i]["text"]} for i in order]
    synthesize_corpus(make_tts(syn), records, Path(out) / "speech", f"D_active γ={gamma}", workers=syn.workers,
                      shard_docs=syn.shard_docs)
    encode_corpus(make_encoder(enc), Path(out) / "speech", Path(out) / "features", f"D_active γ={gamma}",
                  workers=enc.workers, shard_docs=enc.shard_docs)
    real = audio_seconds(Path(out) / "speech")
    spoken = [(int(i), pool[i]["id"], real[pool[i]["id"]]) for i in order if pool[i]["id"] in real]  # TTS skips
    prefix = {b: budget_prefix([s for _, _, s in spoken], seconds) for b, seconds in budgets.items()}
    selection = {"gamma": gamma, "order": [doc_id for _, doc_id, _ in spoken],
                 "seconds": [round(s, 4) for _, _, s in spoken], "prefix": {str(b): n for b, n in prefix.items()}}
    write_json(Path(out) / "selection.json", selection)

    est_by_index = dict(zip(available.tolist(), estimate.tolist()))
    metrics = {"gamma": gamma, "p_target": target.tolist(), "speech_seconds": speech_seconds,
               "seconds_per_word": spw, "planned": len(order), "synthesized": len(spoken),
               "skipped_by_tts": len(order) - len(spoken),
               "estimate_ratio": sum(s for _, _, s in spoken) / sum(est_by_index[i] for i, _, _ in spoken),
               "budgets": {}}
    for b, n in prefix.items():
        chosen = spoken[:n]
        metrics["budgets"][str(b)] = {
            "budget_seconds": budgets[b], "documents": n, "seconds": sum(s for _, _, s in chosen),
            "per_cluster": np.bincount(labels[[i for i, _, _ in chosen]], minlength=cfg.clusters).tolist()}
    write_json(metrics_path, metrics)
    return metrics


def active_ids(select_dir: Path, budget: float) -> list[str]:
    """The ids of D_active for `budget` (one of active.budgets) from an active-select output."""
    selection = json.loads((Path(select_dir) / "selection.json").read_text())
    if str(float(budget)) not in selection["prefix"]:
        raise ValueError(f"{select_dir}: no D_active for budget {budget}; it has {sorted(selection['prefix'])}")
    return selection["order"][:selection["prefix"][str(float(budget))]]


def cluster_table(params: Params, metrics_root: Path):
    """One row per cluster: its label (first distinctive terms), the share of D_web, D_speech and D_active (SALAD's
    gamma at SALAD's budget, and gamma = 0) that falls in it, and M(c) ± se (paper Figures 2 and 9)."""
    import pandas as pd

    root = Path(metrics_root) / "active"
    clusters = json.loads((root / "clusters.json").read_text())
    mis = json.loads((root / "misalignment.json").read_text())
    cfg = params.active
    table = pd.DataFrame({"cluster": range(cfg.clusters),
                          "label": [", ".join(t[:3]) for t in clusters["terms"]],
                          "web_share": clusters["spread"]["web"], "speech_share": clusters["spread"]["speech"],
                          "M": mis["M"], "M_se": mis["M_se"]})
    for gamma in dict.fromkeys((0.0, cfg.gamma)):
        spent = json.loads((root / "select" / f"{gamma}.json").read_text())["budgets"][str(cfg.budget)]
        counts = np.asarray(spent["per_cluster"], dtype=float)
        table[f"active_share_gamma{gamma:g}"] = counts / max(counts.sum(), 1)
    return table
