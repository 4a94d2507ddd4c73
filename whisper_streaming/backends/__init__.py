"""Who runs the ASR behind the runtime: the backend interface and the local supervised process pool."""
