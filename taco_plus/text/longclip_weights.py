"""Where the Long-CLIP checkpoints (Zhang et al., ECCV 2024) are: the official release on the
Hugging Face hub, which ``taco-plus download longclip-b`` (``-l``) puts in the hub's cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

# name -> (Hugging Face repo, file), as github.com/beichenzbc/Long-CLIP (checkpoints/model_zoo.md) links them
LONGCLIP_CHECKPOINTS = {"longclip-b": ("BeichenZhang/LongCLIP-B", "longclip-B.pt"),
                        "longclip-l": ("BeichenZhang/LongCLIP-L", "longclip-L.pt")}


def longclip_checkpoint(name: str = "longclip-b", cache_dir: Optional[str] = None) -> Optional[Path]:
    """The local file of a downloaded Long-CLIP checkpoint (``"longclip-b"``, ``"longclip-l"``), or
    None when the Hugging Face cache (``cache_dir``: the hub's default) does not hold it."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(*LONGCLIP_CHECKPOINTS[name], cache_dir=cache_dir)
    return Path(path) if isinstance(path, str) else None
