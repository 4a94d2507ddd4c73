"""``python -m whisper_streaming``: run the server (same as ``whisper-streaming-server``)."""

import sys

from whisper_streaming.app.main import server_main

sys.exit(server_main())
