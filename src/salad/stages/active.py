"""The data stages of active selection (paper Section 4, Appendix A.8; docs/design.md §6): from D_web to D_active.

    active-embed        sentence embeddings of the selection pool (a seeded sample of D_web, or all of it), of the
                        held-out probe documents and of D_speech's texts (for the domain plots)
    active-cluster      balanced k-means of the pool into K clusters; each cluster's probe documents and its
                        distinctive terms (c-TF-IDF); how D_web, D_speech and the probes spread over the clusters
    active-probes       the probe documents in the fixed voice, encoded (pre-synthesized speech, as the paper's)
    active-misalignment M(c) = L_DIST of the Stage I model on the probe documents of cluster c
    active-select       for one gamma: P_target ∝ P_web·M^gamma, the draw order, its speech, and for every budget the
                        draw-order prefix whose audio first reaches it: D_active

The rules fixed where the paper is silent live with the library: how probes are chosen (salad.selection.pool), how
a budget in audio becomes a prefix of one seeded draw order (salad.selection.budget), how M(c) is measured
(salad.selection.misalignment).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from salad.config import Params
from salad.data.documents import load_aligned
from salad.model.speech_lm import load_student
from salad.model.teacher import load_teacher, load_tokenizer
from salad.selection.budget import audio_seconds, budget_prefix, seconds_per_word
from salad.selection.clustering import balanced_kmeans, nearest_centroid
from salad.selection.embed import embed_texts, load_embedder
from salad.selection.misalignment import cluster_misalignment
from salad.selection.pool import choose_probes, pool_sample
from salad.selection.target import estimated_duration, p_target, p_web, select_documents
from salad.selection.terms import cluster_terms
from salad.speech.encoders import make_encoder
from salad.speech.encoding import encode_corpus
from salad.speech.synthesis import make_tts, synthesize_corpus
from salad.storage.atomic import atomic_dir, read_jsonl, write_json, write_jsonl

__all__ = ["embed_stage", "cluster_stage", "probes_stage", "misalignment_stage", "select_stage"]

EMBEDDED = ("pool", "probe", "speech")
"""The texts embedded by active-embed: the selection pool, the held-out probes, D_speech (domain plots only)."""


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


def probes_stage(params: Params, clusters: Path, phones: Path, out: Path) -> dict:
    """The probe documents spoken in the fixed voice (out/speech) and encoded (out/features)."""
    records = [{"id": r["id"], "text": r["text"]} for r in read_jsonl(Path(clusters) / "probes.jsonl")]
    syn, enc = params.synthesize, params.encode
    speech = synthesize_corpus(make_tts(syn), records, Path(out) / "speech", "probes", workers=syn.workers,
                               shard_docs=syn.shard_docs)
    features = encode_corpus(make_encoder(enc, phones), Path(out) / "speech", Path(out) / "features", "probes",
                             workers=enc.workers, shard_docs=enc.shard_docs)
    return {"speech": speech, "features": features}


def misalignment_stage(params: Params, teacher_dir: Path, model_dir: Path, clusters: Path, probes: Path,
                       metrics_path: Path) -> dict:
    """M(c): the Stage I model's L_DIST (nats per masked position) on cluster c's probes, over `measure.layouts`
    seeded span layouts, with the standard error over layouts."""
    cfg = params.active
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir)
    model = load_student(model_dir, teacher_dir).eval()
    cluster_of = {r["id"]: r["cluster"] for r in read_jsonl(Path(clusters) / "probes.jsonl")}
    docs = load_aligned(Path(probes) / "speech", Path(probes) / "features", tokenizer)
    missing = sorted(set(range(cfg.clusters)) - {cluster_of[d.id] for d in docs})
    if missing:
        raise ValueError(f"clusters {missing} have no probe with speech (the synthesizer skipped them all): "
                         f"M(c) is undefined there; see {probes}/speech/stats")
    mis = cluster_misalignment(model, teacher, docs, [cluster_of[d.id] for d in docs], cfg.clusters,
                               params.measure.layouts, params.seed, params.train)
    labels = np.load(Path(clusters) / "labels.npy")
    metrics = {"model": str(model_dir), "M": mis.m.tolist(), "M_se": mis.se.tolist(),
               "positions": mis.positions.tolist(),
               "p_web": p_web(labels, cfg.clusters).tolist(), "layouts": params.measure.layouts}
    write_json(metrics_path, metrics)
    return metrics


def select_stage(params: Params, gamma: float, embeddings: Path, clusters: Path, misalignment: Path, probes: Path,
                 speech: Path, phones: Path, out: Path, metrics_path: Path) -> dict:
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
    encode_corpus(make_encoder(enc, phones), Path(out) / "speech", Path(out) / "features", f"D_active γ={gamma}",
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
