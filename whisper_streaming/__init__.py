"""whisper_streaming: streaming speech-to-text server (WHISPER_STREAMING_V1.0 over TCP, Asterisk AudioSocket). See docs/architecture.md."""
