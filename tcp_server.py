#!/usr/bin/env python3
"""Run the streaming ASR server: ``python tcp_server.py [--config config_vad.yaml] [--host H] [--port P]``."""

import sys

from whisper_streaming.app.main import server_main

if __name__ == "__main__":
    sys.exit(server_main())
