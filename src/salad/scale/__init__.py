"""Paper scale without a cluster: the dry-run estimate of a profile's audio, disk and GPU-hours (`estimate`), a
profile validated end to end on tiny stand-ins (`check_profile`), random-weight local stand-ins of Mimi and Kokoro
(`mimi_standin`, `kokoro_standin`), and the paper-scale corpora streamed into resumable local parts (`corpora`)."""
