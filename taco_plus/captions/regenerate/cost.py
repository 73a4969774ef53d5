"""Token and cost estimates for ``--dry-run`` (the rules are in docs/captions.md): OpenAI's
image-token rule, 4 characters per text token plus 7 of chat framing, 0.75 words per answer
token, and the prices (USD per 1M tokens, batch discount) of ``prices.json``."""

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


def image_tokens(width: int, height: int, detail: str, base_tokens: int = 85, tile_tokens: int = 170) -> int:
    """Input tokens billed for one image: ``base_tokens`` at ``detail="low"``; otherwise (``"auto"``
    counted as ``"high"``, an upper bound) ``tile_tokens`` more per 512-px tile of the image
    scaled to fit 2048x2048, then to a shortest side of 768 (both only shrink, rounding down)."""
    if detail == "low":
        return base_tokens
    w, h = width, height
    for limit, side in ((2048, max), (768, min)):
        if side(w, h) > limit:
            scale = limit / side(w, h)
            w, h = int(w * scale), int(h * scale)
    return base_tokens + tile_tokens * math.ceil(w / 512) * math.ceil(h / 512)


def load_prices(path: Optional[os.PathLike | str] = None) -> dict:
    """The price table: ``{"batch_discount": 0.5, "models": {name: {"input_per_1m", ...}}}``."""
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
    """Tokens and dollars of ``requests`` requests to ``model``: estimated input tokens, expected
    answer tokens and their ``max_tokens`` bound; ``price`` is None for a model without one."""

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
        lines = [f"requests:              {self.requests:,}",
                 f"input tokens (est.):   {self.input_tokens:,}",
                 f"output tokens (est.):  {self.output_tokens:,} expected, at most {self.max_output_tokens:,}"]
        if self.price is None:
            return "\n".join(lines + [f"cost: no price for model {self.model!r} (add it to a --prices file)"])
        for label, batch in (("online", False), ("batch ", True)):
            lines.append(f"cost {label} ({self.model}): ${self.cost(self.output_tokens, batch):,.2f} expected, "
                         f"at most ${self.cost(self.max_output_tokens, batch):,.2f}")
        return "\n".join(lines)


def estimate_cost(model: str, requests: Iterable[tuple[str, int, int]], detail: str, expected_words: int,
                  max_tokens: int, prices: dict) -> CostEstimate:
    """Estimate tokens and cost of requests given as ``(prompt_text, image_width, image_height)``."""
    entry = prices["models"].get(model) or {}
    tiles = [entry.get("image_base_tokens", 85), entry.get("image_tile_tokens", 170)]
    n = input_tokens = 0
    for text, width, height in requests:
        n += 1
        input_tokens += (math.ceil(len(text) / CHARS_PER_TOKEN) + CHAT_OVERHEAD_TOKENS
                         + image_tokens(width, height, detail, *tiles))
    expected = min(max_tokens, math.ceil(expected_words / WORDS_PER_TOKEN))
    return CostEstimate(model, n, input_tokens, n * expected, n * max_tokens, prices["models"].get(model),
                        float(prices.get("batch_discount", 0.5)))
