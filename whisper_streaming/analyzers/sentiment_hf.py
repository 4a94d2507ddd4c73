"""The ``transformers`` sentiment engine: a Hugging Face text-classification model.

Imported only when ``sentiment.engine: transformers`` (it imports torch and transformers).
``sentiment.model`` is a model name (resolved by transformers: its local cache, else the Hub,
which needs internet) or a local directory made with ``save_pretrained``.  The default is the
original analyzer's ``distilbert-base-uncased-finetuned-sst-2-english``; for other languages
name a multilingual model.

The model's labels are mapped once, at load time (:func:`map_label`): a name containing
``pos``/``neg``/``neu`` (any case: ``POSITIVE``, ``Negative``, ``neutral``); ``LABEL_0``/``LABEL_1``
of a 2-label model -> negative/positive and ``LABEL_0..2`` of a 3-label model ->
negative/neutral/positive; ``1 star`` .. ``5 stars`` (5-label review models) -> 1-2 negative,
3 neutral, 4-5 positive.  A model with a label that maps to nothing is refused at load time.
The score is the pipeline's probability of the top label.  A 2-label model (SST-2) never says
neutral.
"""

from __future__ import annotations

import re
from typing import Any

from whisper_streaming.errors import SentimentError
from whisper_streaming.analyzers.sentiment import NEGATIVE, NEUTRAL, POSITIVE, Sentiment, SentimentOptions

__all__ = ["TransformersEngine", "map_label"]

_INDEXED = re.compile(r"label_(\d+)\Z")
_STARS = re.compile(r"([1-5]) stars?\Z")
_BY_INDEX = {2: (NEGATIVE, POSITIVE), 3: (NEGATIVE, NEUTRAL, POSITIVE)}
_BY_STARS = {1: NEGATIVE, 2: NEGATIVE, 3: NEUTRAL, 4: POSITIVE, 5: POSITIVE}


def map_label(raw: str, n_labels: int) -> str | None:
    """A model's label -> ``positive``/``negative``/``neutral``, or None when it cannot tell."""
    name = raw.strip().lower()
    for part, label in (("pos", POSITIVE), ("neg", NEGATIVE), ("neu", NEUTRAL)):
        if part in name:
            return label
    if (m := _INDEXED.match(name)) and n_labels in _BY_INDEX:
        index = int(m.group(1))
        labels = _BY_INDEX[n_labels]
        return labels[index] if index < len(labels) else None
    if (m := _STARS.match(name)) and n_labels == 5:
        return _BY_STARS[int(m.group(1))]
    return None


class TransformersEngine:
    """``pipeline("text-classification")`` on CPU (or ``cuda``). See the module docstring.

    Raises:
        SentimentError: from construction, when transformers is missing, the model cannot be
            loaded, or one of its labels cannot be mapped.
    """

    name = "transformers"

    def __init__(self, options: SentimentOptions) -> None:
        try:
            import torch
            from transformers import pipeline
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise SentimentError(f"the transformers engine needs the transformers and torch packages: {exc}") from exc
        if options.threads > 0:
            torch.set_num_threads(options.threads)
        hf_logging.disable_progress_bar()
        try:
            self._pipe: Any = pipeline("text-classification", model=options.model, device=0 if options.device == "cuda" else -1)
        except Exception as exc:  # noqa: BLE001 - OSError (no such model / offline), ValueError, ...
            raise SentimentError(f"cannot load sentiment model {options.model!r}: {exc}") from exc
        raw_labels = list(self._pipe.model.config.id2label.values())
        self._labels: dict[str, str] = {}
        for raw in raw_labels:
            mapped = map_label(str(raw), len(raw_labels))
            if mapped is None:
                raise SentimentError(f"sentiment model {options.model!r}: cannot map its label {raw!r} to positive/negative/neutral")
            self._labels[str(raw)] = mapped
        self.model = options.model
        self.languages = options.default_languages()

    def classify(self, text: str) -> Sentiment:
        try:
            top = self._pipe(text, truncation=True)[0]
            return Sentiment(self._labels[top["label"]], min(1.0, max(0.0, float(top["score"]))))
        except Exception as exc:  # noqa: BLE001
            raise SentimentError(f"transformers classification failed: {exc}") from exc
