"""Sans-IO streaming pipeline: VAD endpointing and the per-connection session (commands in, actions out)."""
