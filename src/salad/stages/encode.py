"""The `encode` stage: frozen speech-encoder features at 12.5 Hz for every synthesized corpus, cached on disk.

Each corpus's feature store `data/features/<corpus>/` sits beside its speech store (its format and the encoding:
salad.speech.encoding; the encoders and their registry: salad.speech.encoders). Shards are encoded by `encode.workers`
processes (and torchrun ranks) and a killed run resumes at the first unfinished shard.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from salad.config import EncodeConfig
from salad.speech.encoders import make_encoder
from salad.speech.encoding import encode_corpus
from salad.storage.atomic import write_json
from salad.storage.store import check_skips, content_stats, distributed_rank

__all__ = ["encode"]


SYNTHESIZED = ("speech", "test", "eval")
"""The corpora every pipeline synthesizes; `broad` (the grid's synthetic side) and `eval_voice2` (the eval contexts
in the second voice) are encoded when they were made."""
OPTIONAL = ("broad", "eval_voice2")


def encode(cfg: EncodeConfig, speech: Path, phones: Path, out: Path, natural: Path | None = None) -> dict:
    """Encode the synthesized corpora under `speech` (speech, test, eval, and broad and eval_voice2 when present)
    and, when given, the natural speech store, with the encoder `cfg` names (`phones`: the trained phone classifier,
    read when that is the encoder)."""
    encoder = make_encoder(cfg, phones)
    corpora = {name: Path(speech) / name for name in SYNTHESIZED}
    for name in OPTIONAL:
        if (Path(speech) / name / "index.jsonl").exists():
            corpora[name] = Path(speech) / name
        elif (Path(out) / name).exists():  # features of a corpus that is no longer synthesized
            shutil.rmtree(Path(out) / name)
    if natural is not None:
        corpora["natural"] = Path(natural)
    stats = {name: encode_corpus(encoder, src, out / name, name, workers=cfg.workers, shard_docs=cfg.shard_docs)
             for name, src in corpora.items()}
    if any(s is None for s in stats.values()):
        return {"rank": distributed_rank()[0], "finished": "own shards; the last rank writes stats.json"}
    write_json(out / "stats.json", content_stats(stats))  # the counts stay readable when the check below fails
    for name, corpus_stats in stats.items():
        check_skips(corpus_stats, cfg.max_skip_fraction, f"encode {name}")
    return stats
