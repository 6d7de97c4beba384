"""Does the student hear the last spoken word? Subject-verb agreement right after a spoken pronoun, scored three
ways (teacher text, student text, student speech); not a pipeline stage.

Run from a project root holding a pipeline's outputs (params.yaml's encoder is the one the student was trained
with):

    .venv/bin/python explorations/last_word_probe.py

Each context is a short clause ending in a subject pronoun ("After the long walk home they"); the number printed is
the mean log-likelihood of the plural verb form minus the singular one (" are" - " is", " were" - " was",
" have" - " has"), for singular subjects (it, he, she) and plural ones (they, we, you). A model that hears the
pronoun puts the two groups far apart; in speech the pronoun is the last word of the audio, so the spread measures
whether the first text token after speech uses the words just heard, not only the topic of the whole context.
"""

from __future__ import annotations

import numpy as np
import torch

from common import load_models, three_ways

CLAUSES = ("After the long walk home {}", "I told my brother that {}", "In the morning {}", "When the rain stopped {}",
           "Nobody knows why {}")
SUBJECTS = {"singular": ("it", "he", "she"), "plural": ("they", "we", "you")}
PAIRS = (("is", "are"), ("was", "were"), ("has", "have"))


def main() -> None:
    models = load_models()
    with torch.no_grad():
        for singular_form, plural_form in PAIRS:
            log_odds = {}
            for number, subjects in SUBJECTS.items():
                per_way: dict[str, list[float]] = {}
                for clause in CLAUSES:
                    for subject in subjects:
                        scores = three_ways(models, clause.format(subject), [singular_form, plural_form])
                        for way, (single, plural) in scores.items():
                            per_way.setdefault(way, []).append(plural - single)
                log_odds[number] = {way: float(np.mean(v)) for way, v in per_way.items()}
            for way in log_odds["plural"]:
                spread = log_odds["plural"][way] - log_odds["singular"][way]
                print(f"{plural_form} - {singular_form} {way}: singular subjects {log_odds['singular'][way]:+.2f}, "
                      f"plural {log_odds['plural'][way]:+.2f}, spread {spread:+.2f} nats", flush=True)


if __name__ == "__main__":
    main()
