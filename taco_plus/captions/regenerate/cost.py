"""Token and cost estimates for ``--dry-run``.

Image tokens follow OpenAI's published rule for gpt-4o: ``detail="low"`` costs a flat
85 tokens; ``detail="high"`` first scales the image to fit inside 2048x2048, then so its
shortest side is 768 px, and costs 170 tokens per 512-px tile plus 85. Both scalings
only shrink (a 512x512 image is one tile, 255 tokens) and round down to whole pixels.
``detail="auto"`` is counted as ``high`` (an upper bound). Other models use their
own base/tile counts from the price table.

Text tokens are estimated at 4 characters per token (OpenAI's rule of thumb for
English) plus a fixed chat-format overhead; expected answer tokens at 0.75 words per
token. Prices (USD per 1M tokens) are config values in ``prices.json``; the Batch
API costs ``batch_discount`` (50%) of the online price.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

PRICES_FILE = Path(__file__).with_name("prices.json")
CHARS_PER_TOKEN = 4
WORDS_PER_TOKEN = 0.75
CHAT_OVERHEAD_TOKENS = 7  # role/message framing (3 + 1 per message) and reply priming (3)
GPT4O_IMAGE_BASE_TOKENS = 85
GPT4O_IMAGE_TILE_TOKENS = 170


def image_tokens(
    width: int,
    height: int,
    detail: str,
    base_tokens: int = GPT4O_IMAGE_BASE_TOKENS,
    tile_tokens: int = GPT4O_IMAGE_TILE_TOKENS,
) -> int:
    """Input tokens billed for one image of ``width`` x ``height`` pixels."""
    if detail == "low":
        return base_tokens
    w, h = width, height
    if max(w, h) > 2048:  # fit inside 2048x2048
        scale = 2048 / max(w, h)
        w, h = int(w * scale), int(h * scale)
    if min(w, h) > 768:  # shortest side to 768
        scale = 768 / min(w, h)
        w, h = int(w * scale), int(h * scale)
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return base_tokens + tile_tokens * tiles


def text_tokens(text: str) -> int:
    """Estimated tokens of prompt text (4 characters per token, rounded up)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def load_prices(path: Optional[os.PathLike | str] = None) -> dict:
    """The price table: ``{"batch_discount": 0.5, "models": {name: {...}}}``."""
    path = Path(path) if path else PRICES_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data.get("models"), dict):
        raise ValueError(f"{path}: a price table needs a \"models\" object")
    for name, entry in data["models"].items():
        for key in ("input_per_1m", "output_per_1m"):
            if not isinstance(entry.get(key), (int, float)):
                raise ValueError(f"{path}: models[{name!r}] needs a number {key!r} (USD per 1M tokens)")
    return data


@dataclass
class CostEstimate:
    """Tokens and dollars for a set of requests.

    Args:
        model: model name.
        requests: number of requests.
        input_tokens: estimated prompt tokens (text + images) over all requests.
        output_tokens: expected answer tokens (from the prompt's expected length).
        max_output_tokens: upper bound (``max_tokens`` per request).
        price: ``{"input_per_1m", "output_per_1m"}`` or None for a model without a price.
        batch_discount: batch price as a fraction of the online price.
    """

    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    max_output_tokens: int
    price: Optional[dict]
    batch_discount: float = 0.5

    def cost(self, output_tokens: int, batch: bool = False) -> Optional[float]:
        if self.price is None:
            return None
        usd = (self.input_tokens * self.price["input_per_1m"] + output_tokens * self.price["output_per_1m"]) / 1e6
        return usd * self.batch_discount if batch else usd

    def table(self) -> str:
        def money(value: Optional[float]) -> str:
            return "n/a" if value is None else f"${value:,.2f}"

        lines = [
            f"requests:              {self.requests}",
            f"input tokens (est.):   {self.input_tokens:,}",
            f"output tokens (est.):  {self.output_tokens:,} expected, at most {self.max_output_tokens:,}",
        ]
        if self.price is None:
            lines.append(f"cost: no price for model {self.model!r} (add it to a --prices file)")
        else:
            for label, batch in (("online", False), ("batch ", True)):
                lines.append(
                    f"cost {label} ({self.model}): {money(self.cost(self.output_tokens, batch))} expected, "
                    f"at most {money(self.cost(self.max_output_tokens, batch))}"
                )
        return "\n".join(lines)


def estimate_cost(
    model: str,
    requests: Iterable[tuple[str, int, int]],
    detail: str,
    expected_words: int,
    max_tokens: int,
    prices: dict,
) -> CostEstimate:
    """Estimate tokens and cost of requests given as ``(prompt_text, image_width, image_height)``."""
    entry = prices["models"].get(model)
    base = (entry or {}).get("image_base_tokens", GPT4O_IMAGE_BASE_TOKENS)
    tile = (entry or {}).get("image_tile_tokens", GPT4O_IMAGE_TILE_TOKENS)
    n, input_tokens = 0, 0
    for text, width, height in requests:
        n += 1
        input_tokens += text_tokens(text) + CHAT_OVERHEAD_TOKENS + image_tokens(width, height, detail, base, tile)
    expected = min(max_tokens, math.ceil(expected_words / WORDS_PER_TOKEN))
    return CostEstimate(
        model=model,
        requests=n,
        input_tokens=input_tokens,
        output_tokens=n * expected,
        max_output_tokens=n * max_tokens,
        price=entry,
        batch_discount=float(prices.get("batch_discount", 0.5)),
    )
