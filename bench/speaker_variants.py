"""Speaker identification under the generalization variants: enrol Harvard speakers 1 and 2 from
their clean first utterances (>= 4 s), then identify their other utterances and every other
speaker's (impostors) after a level change, a lossy codec, or 10 dB white noise (bench/variants.py),
at the default SpeakerPolicy.  Usage: ``.venv/bin/python bench/speaker_variants.py``"""
import sys
from pathlib import Path

import numpy as np
from collections import defaultdict
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.speaker_id_bench import load_en
from bench.variants import relevel, codec_roundtrip, white_noise
from whisper_streaming.analyzers.speaker_id import SpeakerAnalyzer
from whisper_streaming.core.speakers import SpeakerBook, SpeakerPolicy, merge_voiceprints, UNKNOWN

utts = load_en()
an = SpeakerAnalyzer(None)
by = defaultdict(list)
for u in utts:
    by[u.speaker].append(u)
enrolled = ["harvard_spk1", "harvard_spk2"] if "harvard_spk1" in by else sorted(k for k in by if k)[:2]
print("speakers", {k: len(v) for k, v in by.items()}, "enrolled", enrolled)
book = SpeakerBook(SpeakerPolicy())
tests = []
for spk in enrolled:
    prints, sec = [], 0.0
    rest = []
    for u in by[spk]:
        if sec < 4.0:
            p = an.analyze(u.audio, None); prints.append(p); sec += p.speech_s
        else:
            rest.append(u)
    book.enroll(spk, merge_voiceprints(prints))
    tests += [(u, spk) for u in rest]
impostors = [(u, UNKNOWN) for k, v in by.items() if k not in enrolled for u in v]
rng = np.random.default_rng(0)
def variant(x, name):
    x16 = x * 32768.0
    if name == "orig": y = x16
    elif name.startswith("level"): y = relevel(x16, -float(name[6:]))
    elif name in ("opus", "mp3"): y = codec_roundtrip(x16, 16000, name)[0]
    elif name == "white10": y = white_noise(x16, 16000, 10.0, rng)[0]
    return (np.asarray(y, dtype=np.float64) / 32768.0).astype(np.float32)
for name in ("orig", "level-20", "level-45", "level-65", "opus", "mp3", "white10"):
    right = sum(book.identify(an.analyze(variant(u.audio, name), None)).label == spk for u, spk in tests)
    fa = sum(book.identify(an.analyze(variant(u.audio, name), None)).label != UNKNOWN for u, _ in impostors)
    print(f"{name:9s} accuracy {right}/{len(tests)}  false accepts {fa}/{len(impostors)}")
