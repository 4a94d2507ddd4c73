"""``python -m whisper_streaming.models assemble|resolve|convert``."""

import sys

from whisper_streaming.models.resolve import main

sys.exit(main())
