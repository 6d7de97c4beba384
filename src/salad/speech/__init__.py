"""Speech in and word times out: the text-to-speech backends with one interface (`tts`: espeak-ng, and the shared
`Speech`/`WordTime` types; `kokoro`: Kokoro from local files) and the speech stores they fill (`synthesis`), natural
speech from manifests (`natural`) with word times from a forced aligner (`align`), and the frozen 12.5 Hz speech
encoders with their interface and registry (`encoders`) and the feature stores they fill (`encoding`)."""
