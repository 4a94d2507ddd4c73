"""Where sessions publish results and audio: the sink interface, JSON-lines log, webhook, PCM saving."""
