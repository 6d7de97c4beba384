"""The paper's other speech LLMs of Tables 3 and 5 as evaluation adapters scored with the same items, formats, shots
and log-likelihood rules as our own models: the Whisper + Qwen2.5 cascade, Qwen2-Audio and Qwen2.5-Omni, and a clear
error for the systems that exist only as hub remote code (`speech_llms`)."""
