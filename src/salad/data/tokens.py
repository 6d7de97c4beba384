"""Text as the LM reads it: the document-start token and a document's token ids with their character offsets.

Kept apart from the speech-side readers (salad.data.documents) so that what only needs text (the teacher and its
tokenizer) depends on nothing of speech.
"""

from __future__ import annotations

import numpy as np

DOC_START = "<|endoftext|>"
"""Document-start token prepended to every text sequence w (Qwen2.5 uses the same string as document separator)."""


def doc_start_id(tokenizer) -> int:
    token_id = tokenizer.convert_tokens_to_ids(DOC_START)
    # a missing token maps to the unknown token (or None); Qwen2's unknown token may itself be DOC_START
    if token_id is None or tokenizer.convert_ids_to_tokens(int(token_id)) != DOC_START:
        raise ValueError(f"tokenizer has no {DOC_START!r} token; it is needed as the document-start token")
    return int(token_id)


def tokenize(tokenizer, text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """w = [document start] + tokens of text, and each text token's character offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.array([doc_start_id(tokenizer)] + list(enc["input_ids"]), dtype=np.int64)
    return ids, [tuple(o) for o in enc["offset_mapping"]]
