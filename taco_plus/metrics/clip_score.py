"""CLIP score of a reconstruction against its caption: ``100 · max(cos(e_I(x̂), e_T(caption)), 0)``
(torchmetrics' ``CLIPScore`` convention; Hessel et al., 2021, "CLIPScore: A Reference-free
Evaluation Metric for Image Captioning", weight the same cosine by 2.5). It asks whether the
decoded image still shows what the caption says: the semantic fidelity TACO's text guidance targets.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF


class ClipScore(nn.Module):
    """CLIP score with a frozen open_clip ``model`` (image and text towers), its ``tokenizer``
    (``open_clip.get_tokenizer``) and the ``name`` recorded in results files."""

    def __init__(self, model: nn.Module, tokenizer: Any, name: str = "clip") -> None:
        super().__init__()
        import open_clip

        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = list(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = list(cfg.get("std", open_clip.OPENAI_DATASET_STD))

    @classmethod
    def load(cls, model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai", device: str = "cpu") -> "ClipScore":
        """Through :func:`taco_plus.text.clip_loading.load_clip`, which fails fast, saying what to
        download, when the weights are not on the machine."""
        import open_clip

        from taco_plus.text.clip_loading import clip_source, load_clip

        model = load_clip(model_name, pretrained, device)
        source = clip_source(model)
        name = source.describe() if source is not None else f"{model_name} pretrained={pretrained!r}"
        return cls(model, open_clip.get_tokenizer(model_name), name=name)

    def preprocess(self, images: Tensor) -> Tensor:
        """open_clip's evaluation transform on tensors: (B, 3, H, W) in [0, 1] -> (B, 3, S, S)
        (short side resized, bicubic and antialiased; centre crop; CLIP normalisation)."""
        size = list(self.image_size)
        images = TF.resize(images.float(), [min(size)], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        return TF.normalize(TF.center_crop(images, size).clamp(0.0, 1.0), self.mean, self.std)

    @torch.no_grad()
    def forward(self, images: Tensor, captions: Sequence[str]) -> Tensor:
        """CLIP scores, (B,), of ``images`` (B, 3, H, W) in [0, 1] against ``captions``."""
        if len(captions) != images.size(0):
            raise ValueError(f"{images.size(0)} images but {len(captions)} captions")
        device = next(self.model.parameters()).device
        image_emb = self.model.encode_image(self.preprocess(images.to(device)))  # (B, D)
        text_emb = self.model.encode_text(self.tokenizer(list(captions)).to(device))  # (B, D)
        return 100.0 * F.cosine_similarity(image_emb.float(), text_emb.float(), dim=-1).clamp(min=0.0)
