"""From stage outputs to the paper's tables, figures and claims (docs/design.md §8): the statistics written out
(`statistics`), the grid's least-squares analysis (`regressions`), the paper's published numbers (`published`), the
tables beside the paper's (`paper_tables`), per-task results on shared items (`results`), Figure 7's per-category
test (`category_gains`), the claims checked by stated rules (`findings`), the registry of every table and figure
(`artifacts`), and notebook execution and report writers (`report`)."""
