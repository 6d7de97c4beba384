"""Writing and reading the pipeline's files safely: atomic writes of text, JSON, JSON lines, arrays and directories
(a file is either complete or absent; `atomic`), and the sharded, resumable, memory-mapped store of per-document arrays
that the speech and feature stages build over processes and torchrun ranks (`store`)."""
