"""Batching dataset items ``{"image", "caption", "id"}``."""

from __future__ import annotations

from typing import Any, Sequence

import torch


def collate_items(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks images (B, 3, H, W); captions and ids stay lists of str.

    Images of a batch must share a size: training crops do; evaluation uses batch 1.
    ``"bad_images"`` lists the unreadable files (path: reason) whose slots other images filled.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    sizes = {tuple(item["image"].shape) for item in items}
    if len(sizes) > 1:
        raise ValueError(
            f"images of one batch differ in size {sorted(sizes)}: use crops or batch size 1"
        )
    return {
        "image": torch.stack([item["image"] for item in items]),
        "caption": [item["caption"] for item in items],
        "id": [item["id"] for item in items],
        "bad_images": [path for item in items for path in item.get("bad_images", ())],
    }
