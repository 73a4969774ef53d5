"""Caption-length statistics in words and in CLIP tokens.

TACO feeds captions to CLIP ViT-B/32's text tower padded/truncated to 38 tokens, and
CLIP itself has 77 positions; long regenerated captions are cut at either limit
(DESIGN.md, pitfall 5). The share of captions over each limit tells how much text a
given encoder configuration throws away.

Token counts use open_clip's ``SimpleTokenizer`` (the CLIP BPE, shipped with open_clip,
works offline): BPE tokens of the cleaned, lower-cased text plus start- and
end-of-text, i.e. the number of non-padding positions CLIP would need.
"""

from __future__ import annotations

import statistics
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

TOKENIZER_DESCRIPTION = "open_clip SimpleTokenizer (CLIP ViT-B-32 BPE); counts include start/end of text"
TACO_TEXT_LENGTH = 38  # TACO's padded text length
CLIP_CONTEXT_LENGTH = 77  # CLIP's positional-embedding length


@lru_cache(maxsize=1)
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer  # imports torch: keep lazy

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
    """Summary statistics of a caption mapping (image id -> captions).

    Returns:
        ``num_images``, ``num_captions``, ``words_per_caption`` and
        ``clip_tokens_per_caption`` (each ``{mean, median, p95, min, max}``),
        ``share_over_38_tokens`` and ``share_over_77_tokens`` (fractions of captions
        longer than TACO's 38-token text input and CLIP's 77-position context), and
        the ``tokenizer`` used.
    """
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
