#!/usr/bin/env python3
"""Stream an audio file to the server: ``python tcp_client.py --ip localhost --port 5000 --ifn test.pcm``."""

import sys

from whisper_streaming.client.cli import client_main

if __name__ == "__main__":
    sys.exit(client_main())
