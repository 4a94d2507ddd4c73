"""ASR engines behind one interface (faster-whisper, openai-whisper), their registry and the pure decoding policy."""
