"""Measuring a model (docs/design.md §4, §7): misalignment M and forgetting F with their diagnostics (`measures`);
the six multiple-choice tasks, their prompt formats and few-shot demonstrations (`tasks`); lm-evaluation-harness
compatible log-likelihood scoring and the accuracies (`scoring`); the benchmark harness, which items, shots and spoken
contexts each run scores, best formats and gaps (`benchmarks`); and the cascaded topline, an ASR transcript read by
the text LM (`cascade`)."""
