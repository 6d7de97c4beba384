"""What every exploration loads and how it scores one item three ways (imported by the scripts beside it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from salad.config import load_params
from salad.evaluation.benchmarks import score_speech, score_text
from salad.model.speech_lm import load_student
from salad.model.teacher import load_teacher, load_tokenizer
from salad.speech.encoders import make_encoder
from salad.speech.synthesis import make_tts


@dataclass
class Models:
    """The default pipeline's teacher and Stage I student, with the fixed voice and the configured encoder."""

    tokenizer: object
    teacher: object
    student: object
    tts: object
    encoder: object


def load_models(root: Path = Path(".")) -> Models:
    params = load_params(root / "params.yaml")
    teacher_dir = root / "data" / "models" / "teacher"
    return Models(load_tokenizer(teacher_dir), load_teacher(teacher_dir).eval(),
                  load_student(root / "data" / "models" / "student", teacher_dir).eval(),
                  make_tts(params.synthesize), make_encoder(params.encode, root / "data" / "models" / "phones"))


def three_ways(m: Models, context: str, choices: list[str]) -> dict[str, list[float]]:
    """Each choice's summed log-likelihood after `context`: the teacher in text, the student in text, and the
    student hearing the whole context (spoken in the fixed voice, encoded), as the harness scores them."""
    speech = m.tts.synthesize(context)
    features = m.encoder(speech.audio, speech.sample_rate)
    return {"teacher_text": score_text(m.teacher, m.tokenizer, context, choices),
            "student_text": score_text(m.student.lm, m.tokenizer, context, choices),
            "student_speech": score_speech(m.student, m.tokenizer, features, choices)}
