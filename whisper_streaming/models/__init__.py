"""Model resolution: bundled base model assembly, local paths and names, CTranslate2 -> openai-whisper conversion."""
