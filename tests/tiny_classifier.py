"""A tiny DistilBERT text classifier built locally (random weights), for the ``transformers`` engine.

Model weights cannot be downloaded on these machines, so the tests (and
``bench/sentiment_cost.py``) build a 2-layer, 32-wide DistilBERT with a WordPiece tokenizer
made here with ``tokenizers``, wrap it in ``PreTrainedTokenizerFast``, and save both with
``save_pretrained``: the directory then loads through the same ``pipeline()`` code as a real
model.  Its labels are meaningless (random weights); only the loading path, the label mapping
and the output shape are tested with it.
"""

from __future__ import annotations

import string
from pathlib import Path

_WORDS = (
    "i love this service thank you so much have been wonderful is terrible hate it the worst "
    "experience of my life good bad great awful not very happy sad call agent help please"
).split()


def build_tiny_classifier(path: str | Path, *, labels: tuple[str, ...] = ("NEGATIVE", "POSITIVE"), seed: int = 0,
                          dims: str = "tiny", extra_words: tuple[str, ...] = ()) -> Path:
    """Write a DistilBERT sequence classifier with ``labels`` (id order) and random weights to ``path``.

    ``dims``: ``"tiny"`` (2 layers, 32 wide) or ``"base"`` (the SST-2 model's shape).
    ``extra_words``: whole words for the vocabulary (others are spelled letter by letter).
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = sorted({w.lower() for w in (*_WORDS, *extra_words) if w.isalnum()})
    tokens = specials + words + chars + [f"##{c}" for c in string.ascii_lowercase + string.digits]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        model_max_length=512 if dims == "base" else 128
    )
    torch.manual_seed(seed)
    shape = dict(vocab_size=len(vocab), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=128)
    if dims == "base":  # DistilBertConfig's defaults are distilbert-base's
        shape = dict(vocab_size=30522, dim=768, hidden_dim=3072, n_layers=6, n_heads=12, max_position_embeddings=512)
    elif dims != "tiny":
        raise ValueError(f"dims must be 'tiny' or 'base', got {dims!r}")
    config = DistilBertConfig(**shape, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    model = DistilBertForSequenceClassification(config)
    out = Path(path)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out
