"""salad: the SALAD research compendium (speech-adapted LLMs, cross-modal distillation, active selection)."""

__version__ = "0.1.0"
