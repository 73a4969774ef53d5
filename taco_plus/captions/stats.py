"""Caption lengths in words and CLIP tokens. TACO pads/truncates captions to 38 tokens and
CLIP has 77 positions; the share of captions over each limit tells how much text an encoder
configuration throws away (DESIGN.md, pitfall 5)."""

from __future__ import annotations

import statistics
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

TOKENIZER_DESCRIPTION = "open_clip SimpleTokenizer (CLIP ViT-B-32 BPE); counts include start/end of text"
TACO_TEXT_LENGTH = 38  # TACO's padded text length
CLIP_CONTEXT_LENGTH = 77  # CLIP's positional-embedding length


@lru_cache(maxsize=1)
def _tokenizer():
    # open_clip's own cleaning (ftfy) copes with lone surrogates, which a broken caption may hold
    from open_clip.tokenizer import SimpleTokenizer  # the CLIP BPE ships with open_clip; imports torch

    return SimpleTokenizer()


def clip_token_count(text: str) -> int:
    """Number of CLIP positions ``text`` occupies untruncated (BPE tokens + SOT + EOT)."""
    return len(_tokenizer().encode(text)) + 2


def _summary(values: Sequence[int]) -> dict:
    ordered = sorted(values)
    p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)]  # nearest rank: 95% of captions do not exceed it
    return {"mean": round(statistics.fmean(ordered), 2), "median": statistics.median(ordered), "p95": p95,
            "min": ordered[0], "max": ordered[-1]}


def caption_stats(captions: Mapping[str, Iterable[str]]) -> dict:
    """The ``stats`` of a caption set (``captions/FORMAT.md``) for image id -> captions."""
    texts = [c for caps in captions.values() for c in caps]
    if not texts:
        raise ValueError("cannot compute statistics of an empty caption set")
    tokens = [clip_token_count(t) for t in texts]
    return {
        "num_images": len(captions),
        "num_captions": len(texts),
        "words_per_caption": _summary([len(t.split()) for t in texts]),
        "clip_tokens_per_caption": _summary(tokens),
        "share_over_38_tokens": round(sum(t > TACO_TEXT_LENGTH for t in tokens) / len(texts), 4),
        "share_over_77_tokens": round(sum(t > CLIP_CONTEXT_LENGTH for t in tokens) / len(texts), 4),
        "tokenizer": TOKENIZER_DESCRIPTION,
    }


def format_stats(stats: Mapping) -> str:
    """A few human-readable lines for the command line."""
    w, t = stats["words_per_caption"], stats["clip_tokens_per_caption"]
    return "\n".join([
        f"images: {stats['num_images']}  captions: {stats['num_captions']}",
        f"words per caption:       mean {w['mean']}  median {w['median']}  p95 {w['p95']}  range {w['min']}-{w['max']}",
        f"CLIP tokens per caption: mean {t['mean']}  median {t['median']}  p95 {t['p95']}  range {t['min']}-{t['max']}",
        f"over 38 tokens (TACO's text length): {100 * stats['share_over_38_tokens']:.1f}%   "
        f"over 77 (CLIP's context): {100 * stats['share_over_77_tokens']:.1f}%",
    ])
