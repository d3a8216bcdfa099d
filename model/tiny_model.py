"""Build a DistilBERT sentiment classifier locally, with no downloads.

``python -m model.tiny_model OUTDIR`` writes a tiny model (a few hundred KB) that
``AutoTokenizer`` / ``AutoModelForSequenceClassification`` load from OUTDIR, the same way they load
a model from the Hugging Face Hub. Tests serve it. ``--full-size`` writes the real DistilBERT
architecture (768 dim, 6 layers, 30522-token vocabulary) with random weights, for benchmarks.

The tokenizer is a ``tokenizers`` WordPiece tokenizer whose vocabulary is counted from a small English
corpus kept in this file; the weights are random (seeded). The same command always writes the same
model, so predictions are deterministic (but meaningless).
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter
from pathlib import Path

LABELS = ("NEGATIVE", "POSITIVE")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

CORPUS = [
    "Hello, my dog is cute",
    "I am feeling happy",
    "hello I am doing good",
    "This movie was wonderful and the actors were great.",
    "The food was terrible and the service was slow.",
    "I love this product, it works exactly as described.",
    "What a waste of time, I want my money back.",
    "The weather is nice today and I am going for a walk.",
    "I hate waiting in long lines at the airport.",
    "She smiled because the news made her very glad.",
    "He was angry that the train was late again.",
    "Our team won the game and everyone is cheering!",
    "The battery died after one hour, very disappointing.",
    "Thank you so much for the kind and thoughtful gift.",
    "This is the worst hotel I have ever stayed in.",
    "The book is boring and far too long.",
    "My cat sleeps all day on the warm sofa.",
    "The new phone is fast, light and beautiful.",
    "I am sad that the summer holidays are over.",
    "Customer support solved my problem in minutes.",
    "The concert was loud, crowded and not worth the price.",
    "We had a lovely dinner with friends last night.",
    "Nothing works and nobody answers the phone.",
    "It is an average film, neither good nor bad.",
]

# Extra words for the full-size vocabulary: enough distinct "words" that the trainer can fill
# 30522 entries, so the embedding table and vocabulary match DistilBERT's real size.
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "bu", "da", "fe", "gi", "ho", "ju", "po"]


def synthetic_corpus(words: int, seed: int = 0) -> list[str]:
    """Lines of made-up words (syllable combinations) to enlarge a WordPiece vocabulary."""
    rng = random.Random(seed)
    vocabulary = ["".join(parts) for n in (2, 3, 4) for parts in itertools.product(_SYLLABLES, repeat=n)]
    rng.shuffle(vocabulary)
    chosen = vocabulary[:words]
    return [" ".join(chosen[i : i + 12]) for i in range(0, len(chosen), 12)]


def wordpiece_vocabulary(corpus: list[str], vocab_size: int) -> dict[str, int]:
    """A WordPiece vocabulary counted from ``corpus`` with the BERT normalizer and pre-tokenizer.

    Special tokens, then every character (alone and as a ``##`` continuation, so no text is ever
    unknown), then whole words by frequency. Built directly rather than with ``WordPieceTrainer``,
    whose tie-breaking follows hash order: two runs would give two vocabularies, and tests and
    benchmarks need the same model every time.
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word for line in corpus for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
    )
    characters = sorted({character for word in counts for character in word})
    tokens = [*SPECIAL_TOKENS, *characters, *(f"##{character}" for character in characters)]
    known = set(tokens)
    tokens += [word for word in sorted(counts, key=lambda w: (-counts[w], w)) if word not in known]
    return {token: index for index, token in enumerate(tokens[:vocab_size])}


def build_tokenizer(corpus: list[str], vocab_size: int, max_length: int):
    """A lowercase BERT-style WordPiece tokenizer (``tokenizers``) as a ``transformers`` fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import DistilBertTokenizerFast

    vocabulary = wordpiece_vocabulary(corpus, vocab_size)
    tokenizer = Tokenizer(models.WordPiece(vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(token, vocabulary[token]) for token in ("[CLS]", "[SEP]")],
    )
    return DistilBertTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=max_length,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def write_classifier(outdir: Path | str, full_size: bool = False, seed: int = 0) -> Path:
    """Write tokenizer + DistilBERT sequence classifier (labels NEGATIVE/POSITIVE) to ``outdir``."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    outdir = Path(outdir)
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
    if full_size:
        config = DistilBertConfig(**labels)  # DistilBERT defaults: dim 768, 6 layers, vocab 30522
        corpus = CORPUS + synthetic_corpus(words=40000, seed=seed)
    else:
        # A wide weight init makes the random tiny model answer differently per input (both labels occur),
        # so tests can tell one request's answer from another's.
        config = DistilBertConfig(
            vocab_size=400,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            initializer_range=0.5,
            **labels,
        )
        corpus = CORPUS
    tokenizer = build_tokenizer(corpus, config.vocab_size, config.max_position_embeddings)
    if not full_size:
        config.vocab_size = len(tokenizer)  # tiny vocabulary: the embedding table matches it exactly
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config).eval()
    outdir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(outdir)
    model.save_pretrained(outdir)
    return outdir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m model.tiny_model", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", help="directory to write the model into (created if missing)")
    parser.add_argument(
        "--full-size",
        action="store_true",
        help="real DistilBERT size (768 dim, 6 layers, vocab 30522) with random weights, ~270 MB",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    args = parser.parse_args(argv)
    path = write_classifier(args.outdir, full_size=args.full_size, seed=args.seed)
    print(path)


if __name__ == "__main__":
    main()
