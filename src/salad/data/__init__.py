"""From shipped text to training sequences: the deterministic splits of the raw data (`splits`), reading the stage
outputs back as tokenized documents with word times and encoder features (`documents`), the interleaving of speech
and text spans with its position map to the text-only sequence (`interleave`, docs/design.md §3), and padding
sequences into batches with their masked positions gathered (`batch`)."""
