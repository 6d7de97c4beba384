"""A random-weight stand-in for Kokoro-82M, for tests and benchmarks of `salad.speech.kokoro` on a machine without the
real files. It is NOT a voice: its audio is noise-like, and only its shapes, code path and timing behaviour are real.

`build_kokoro_standin(folder)` writes, atomically, everything `KokoroTTS` needs and returns its keyword arguments:

- `kokoro-standin.pth`: a checkpoint of the real `kokoro.KModel` architecture in the layout `KModel(model=...)` loads
  ({"bert" | "bert_encoder" | "predictor" | "text_encoder" | "decoder": state_dict}), with a reduced config where the
  architecture allows it: a 2-layer, 64-wide PL-BERT (the real one: 12 x 768), one LSTM layer in the duration and
  text encoders (real: 3), one resblock kernel per iSTFTNet stage (real: 3, 7, 11), and iSTFTNet's two upsampling
  stages at lower rates (3 x 2 with a 50-sample iSTFT hop; real: 10 x 6 with a 5-sample hop), which keeps the 300
  samples per decoder frame but cuts the generator's work about six-fold. The widths that kokoro's code hard-codes
  stay real (hidden_dim 512, the decoder's 1024/512 channels, upsample_initial_channel 512), as do the style width
  (128, so that the voice pack has the real shape), the 24 kHz output, the 600 samples (25 ms) per predicted
  duration frame and the 512-position context. That is about 57M parameters (real: 82M), mostly the decoder's
  fixed-width blocks; they are stored in float16 (about 115 MB).
- `config.json`: that config, with the real Kokoro-82M phoneme vocabulary (178 token ids; the entries are copied from
  hexgrad/Kokoro-82M's config.json), so that misaki's phonemes map to ids exactly as in the real model.
- `voices/af_standin.pt`: a random voice pack of the real shape [510, 1, 256] (one 256-d style per phoneme count;
  the first 128 dimensions condition the decoder, the last 128 the prosody predictor).
- `en_rule_tagger/`: a spaCy English pipeline for misaki's G2P, built without any download: spaCy's rule-based
  English tokenizer (the one en_core_web_sm uses) plus an `attribute_ruler` named "tagger" that writes Penn
  Treebank tags from word lists and simple rules. misaki reads only `Token.tag_` (and text/whitespace): punctuation
  tags decide pauses ('.', ',', ':', '-LRB-', ...), '$' and 'CD' currency, 'DT'/'IN'/'TO'/'PRP'/'VBD' a few
  pronunciations ("a", "the", "to", "I", "used"). Everything else is tagged by coarse rules (NN by default), so
  heteronyms may be read with the wrong variant; that does not matter for a stand-in.

Random initialisation of the duration head would give ~25 frames (0.6 s) per phoneme; its weights are scaled and
its bias set so that a phoneme lasts 1-6 frames (about 75 ms on average), i.e. roughly the real speaking rate, which
keeps the audio, the runtime and the word times of the stand-in realistic.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from salad.storage.atomic import atomic_dir, save_torch, write_json

__all__ = ["build_kokoro_standin", "standin_config", "build_rule_tagger", "KOKORO_VOCAB"]

# hexgrad/Kokoro-82M config.json "vocab": phoneme -> input id (id 0 is the boundary token; n_token = 178).
KOKORO_VOCAB: dict[str, int] = {
    ";": 1, ":": 2, ",": 3, ".": 4, "!": 5, "?": 6, "—": 9, "…": 10, '"': 11, "(": 12, ")": 13, "“": 14, "”": 15,
    " ": 16, "\u0303": 17, "ʣ": 18, "ʥ": 19, "ʦ": 20, "ʨ": 21, "ᵝ": 22, "ꭧ": 23, "A": 24, "I": 25, "O": 31, "Q": 33,
    "S": 35, "T": 36, "W": 39, "Y": 41, "ᵊ": 42, "a": 43, "b": 44, "c": 45, "d": 46, "e": 47, "f": 48, "h": 50,
    "i": 51, "j": 52, "k": 53, "l": 54, "m": 55, "n": 56, "o": 57, "p": 58, "q": 59, "r": 60, "s": 61, "t": 62,
    "u": 63, "v": 64, "w": 65, "x": 66, "y": 67, "z": 68, "ɑ": 69, "ɐ": 70, "ɒ": 71, "æ": 72, "β": 75, "ɔ": 76,
    "ɕ": 77, "ç": 78, "ɖ": 80, "ð": 81, "ʤ": 82, "ə": 83, "ɚ": 85, "ɛ": 86, "ɜ": 87, "ɟ": 90, "ɡ": 92, "ɥ": 99,
    "ɨ": 101, "ɪ": 102, "ʝ": 103, "ɯ": 110, "ɰ": 111, "ŋ": 112, "ɳ": 113, "ɲ": 114, "ɴ": 115, "ø": 116, "ɸ": 118,
    "θ": 119, "œ": 120, "ɹ": 123, "ɾ": 125, "ɻ": 126, "ʁ": 128, "ɽ": 129, "ʂ": 130, "ʃ": 131, "ʈ": 132, "ʧ": 133,
    "ʊ": 135, "ʋ": 136, "ʌ": 138, "ɣ": 139, "ɤ": 140, "χ": 142, "ʎ": 143, "ʒ": 147, "ʔ": 148, "ˈ": 156, "ˌ": 157,
    "ː": 158, "ʰ": 162, "ʲ": 164, "↓": 169, "→": 171, "↗": 172, "↘": 173, "ᵻ": 177,
}

VOICE_PACK_LENGTH = 510  # one style per phoneme count 1..510 (KPipeline indexes pack[len(phonemes) - 1])
MEAN_FRAMES_PER_PHONEME = 3.0  # 25 ms frames: ~75 ms per phoneme, about the real model's rate


def standin_config() -> dict:
    """A reduced Kokoro config: the real architecture, smaller wherever kokoro's code lets the config decide."""
    return {
        "istftnet": {
            "upsample_kernel_sizes": [5, 4], "upsample_rates": [3, 2], "gen_istft_hop_size": 50,
            "gen_istft_n_fft": 200, "resblock_dilation_sizes": [[1, 3, 5]], "resblock_kernel_sizes": [3],
            "upsample_initial_channel": 512,
        },
        "dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": 50, "multispeaker": True,
        "n_layer": 1, "n_mels": 80, "n_token": 178, "style_dim": 128, "text_encoder_kernel_size": 5,
        "plbert": {"hidden_size": 64, "embedding_size": 64, "num_attention_heads": 2, "intermediate_size": 128,
                   "max_position_embeddings": 512, "num_hidden_layers": 2, "dropout": 0.1},
        "vocab": dict(KOKORO_VOCAB),
    }


def build_kokoro_standin(folder: str | os.PathLike, seed: int = 0) -> dict:
    """Write a stand-in Kokoro (checkpoint, config, voice, spaCy pipeline) into `folder`; return KokoroTTS kwargs.

    The same seed gives the same weights and voice. Each file is written atomically, so an interrupted build never
    leaves a file that looks finished.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = standin_config()
    paths = {"config": folder / "config.json", "model": folder / "kokoro-standin.pth",
             "voice": folder / "voices" / "af_standin.pt", "spacy_model": folder / "en_rule_tagger"}
    write_json(paths["config"], config)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        save_torch(paths["model"], _random_state(config, paths["config"]))
        voice = 0.3 * torch.randn(VOICE_PACK_LENGTH, 1, 2 * config["style_dim"])
        save_torch(paths["voice"], voice)

    build_rule_tagger(paths["spacy_model"])
    return {key: str(path) for key, path in paths.items()}


def _random_state(config: dict, config_path: Path) -> dict:
    """State dicts of a freshly initialised KModel (kokoro's own init) with a realistic duration head."""
    import torch
    from kokoro import KModel

    with tempfile.TemporaryDirectory() as tmp:  # KModel insists on loading a checkpoint: give it an empty one
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(config_path), model=str(empty))
    head = model.predictor.duration_proj.linear_layer
    with torch.no_grad():
        # duration = sum over max_dur sigmoids: a bias of logit(m / max_dur) gives m frames per phoneme on average,
        # small weights let it vary from phoneme to phoneme.
        p = MEAN_FRAMES_PER_PHONEME / config["max_dur"]
        head.bias.fill_(math.log(p / (1 - p)))
        head.weight.mul_(0.5)
    # float16 halves the file (to ~120 MB); KModel copies the values into its float32 parameters.
    return {name: {k: v.half() if v.is_floating_point() else v for k, v in getattr(model, name).state_dict().items()}
            for name in ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")}


# ---------------------------------------------------------------------------------------------------------------
# A rule-based Penn Treebank tagger for misaki (spaCy attribute_ruler; later patterns win over earlier ones).

_WORD_TAGS: dict[str, tuple[str, ...]] = {
    "DT": ("a", "an", "the", "this", "these", "those", "each", "every", "some", "any", "no", "another", "all"),
    "IN": ("of", "in", "on", "at", "by", "for", "with", "from", "into", "over", "under", "about", "after", "before",
           "between", "through", "during", "without", "within", "against", "among", "around", "upon", "than",
           "since", "until", "via", "toward", "towards", "across", "behind", "beyond", "near", "that", "if",
           "because", "while", "although", "though", "whether", "like", "per", "vs", "vs."),
    "TO": ("to",),
    "CC": ("and", "or", "but", "nor", "&"),
    "PRP": ("i", "you", "he", "she", "it", "we", "they", "me", "him", "us", "them"),
    "PRP$": ("my", "your", "his", "her", "its", "our", "their"),
    "MD": ("can", "could", "may", "might", "must", "shall", "should", "will", "would", "ca", "wo"),
    "VBZ": ("is", "has", "does", "'s"),
    "VBP": ("are", "am", "have", "do", "'re", "'m", "'ve"),
    "VBD": ("was", "were", "had", "did", "'d"),
    "VB": ("be",),
    "VBN": ("been",),
    "RB": ("not", "n't", "very", "too", "also", "just", "only", "never", "always", "often", "here", "there"),
    "WDT": ("which", "whatever"),
    "WP": ("who", "whom", "what"),
    "WRB": ("when", "where", "why", "how"),
}

_PUNCT_TAGS: dict[str, tuple[str, ...]] = {
    ".": (".", "!", "?", "...", "…", "?!", "!?", "!!", "??"),
    ",": (",",),
    ":": (":", ";", "—", "–", "--", "---"),
    "-LRB-": ("(", "[", "{"),
    "-RRB-": (")", "]", "}"),
    "``": ("“", "‘", "``"),
    "''": ("”", "’", "''", '"', "'"),
    "$": ("$", "£", "€", "¥", "US$"),
    "#": ("#",),
    "NFP": ("*", "**", "***", "~", "•", "·", "^", "|"),
    "SYM": ("=", "<", ">", "/", "\\"),
    "NN": ("%",),
    "HYPH": ("-",),
}


def _tag_patterns() -> list[dict]:
    """attribute_ruler patterns in order of increasing precedence."""
    rules: list[dict] = [
        {"patterns": [[{"TEXT": {"REGEX": r"\w"}}]], "attrs": {"TAG": "NN"}},
        {"patterns": [[{"LOWER": {"REGEX": r"^[a-z]{3,}ly$"}}]], "attrs": {"TAG": "RB"}},
        {"patterns": [[{"LOWER": {"REGEX": r"^[a-z]{2,}ed$"}}]], "attrs": {"TAG": "VBD"}},
        {"patterns": [[{"LOWER": {"REGEX": r"^[a-z]{2,}ing$"}}]], "attrs": {"TAG": "VBG"}},
        {"patterns": [[{"LOWER": {"REGEX": r"^[a-z]{3,}(ous|ful|ive|able|ible|al|ic)$"}}]], "attrs": {"TAG": "JJ"}},
    ]
    for tag, words in _WORD_TAGS.items():
        rules.append({"patterns": [[{"LOWER": {"IN": list(words)}}]], "attrs": {"TAG": tag}})
    rules.append({"patterns": [[{"TEXT": "I"}]], "attrs": {"TAG": "PRP"}})
    rules.append({"patterns": [[{"LIKE_NUM": True}], [{"TEXT": {"REGEX": r"^[+-]?\d[\d,.:/]*$"}}]],
                  "attrs": {"TAG": "CD"}})
    for tag, texts in _PUNCT_TAGS.items():
        rules.append({"patterns": [[{"TEXT": {"IN": list(texts)}}]], "attrs": {"TAG": tag}})
    # A hyphen between spaces is a dash (a pause), one inside a word ("text-based") joins it.
    rules.append({"patterns": [[{"TEXT": {"IN": ["-", "–"]}, "SPACY": True}]], "attrs": {"TAG": ":"}})
    return rules


def build_rule_tagger(folder: str | os.PathLike) -> Path:
    """Write a rule-based English spaCy pipeline (tokenizer + "tagger" attribute_ruler) to `folder` atomically."""
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("attribute_ruler", name="tagger")
    for rule in _tag_patterns():
        ruler.add(patterns=rule["patterns"], attrs=rule["attrs"])
    nlp.meta.update(name="rule_tagger", version="0.1.0",
                    description="salad: rule-based Penn Treebank tags for misaki's G2P (a stand-in for "
                                "en_core_web_sm, built offline; not a statistical tagger)")
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        nlp.to_disk(tmp)
    return folder
