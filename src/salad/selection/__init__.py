"""Active selection of Stage II (docs/design.md §6): sentence embeddings of web documents from local models
(`embed`), balanced k-means with exact cluster sizes (`clustering`), the selection pool and its probe documents
(`pool`), each cluster's misalignment M(c) on its probes (`misalignment`), P_web, P_target and the budgeted draw
without replacement (`target`), budgets in audio and the draw-order prefix that spends them (`budget`), and what each
cluster is about by c-TF-IDF terms (`terms`)."""
