"""Training, shared by Stage I and Stage II (docs/design.md §4–5): the distillation objective and the measures' KL,
chunked at masked positions (`objective`); the data plan of every optimizer step, drawn up front from the seed
(`plan`); the optimizer step over processes and micro-batches (`loop`); the warmup-stable-decay schedule
(`schedule`); checkpoints that resume bit for bit (`checkpoint`); FSDP2 sharding with activation checkpointing and
bf16 (`fsdp`); the DVCLive logger (`live`); and the tiny teacher's own next-token pretraining (`pretrain`)."""
