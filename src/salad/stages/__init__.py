"""One module per family of `dvc.yaml` stages, named after its `salad` subcommand: orchestration and I/O only (read
the params and the upstream outputs, call the library, write the outputs and metrics). `prepare`, `teacher`,
`synthesize`, `natural`, `encode`, `train` (Stage I), `measure`, `evaluate`, `grid` (the analysis grid), `active`
(the active-selection data stages), `stage2` (Stage II and its MMSU run) and `report` (the notebooks and their
index)."""
