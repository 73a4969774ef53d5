"""CLIP score of a reconstruction against its caption.

The score is ``100 · max(cos(e_I(x̂), e_T(caption)), 0)`` with CLIP's image and text
embeddings (the convention of torchmetrics' ``CLIPScore``; Hessel et al., 2021,
"CLIPScore: A Reference-free Evaluation Metric for Image Captioning", use the
same cosine with a 2.5 weight). It measures whether the decoded image still shows
what the caption says, which is the semantic fidelity TACO's text guidance targets.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF


class ClipScore(nn.Module):
    """CLIP score with a frozen open_clip model.

    Images are preprocessed as open_clip does for evaluation, on tensors: resize
    the short side to the tower's input size (bicubic, antialiased), centre crop,
    normalise with the model's mean and std.

    Args:
        model: an open_clip ``CLIP`` model (image and text towers).
        tokenizer: the matching open_clip tokenizer (``open_clip.get_tokenizer``).
        name: label recorded in results files (e.g. ``"ViT-B-32/openai"``).
    """

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
    def load(
        cls, model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai", device: str = "cpu"
    ) -> "ClipScore":
        """Loads a CLIP model through ``taco_plus.text.clip_loading.load_clip``.

        That loader fails fast, saying what to download, when pretrained weights
        are not available offline.
        """
        import open_clip

        from taco_plus.text.clip_loading import clip_source, load_clip

        model = load_clip(model_name, pretrained, device)
        source = clip_source(model)
        name = source.describe() if source is not None else f"{model_name} pretrained={pretrained!r}"
        return cls(model, open_clip.get_tokenizer(model_name), name=name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, S, S) normalised CLIP input."""
        out_h, out_w = self.image_size
        images = TF.resize(
            images.float(),
            [min(out_h, out_w)],
            interpolation=TF.InterpolationMode.BICUBIC,
            antialias=True,
        )
        images = TF.center_crop(images, [out_h, out_w]).clamp(0.0, 1.0)
        return TF.normalize(images, self.mean, self.std)

    @torch.no_grad()
    def forward(self, images: Tensor, captions: Sequence[str]) -> Tensor:
        """CLIP scores, (B,), of ``images`` (B, 3, H, W) in [0, 1] against ``captions``."""
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.size(1) != 3:
            raise ValueError(f"expected (B,3,H,W) images, got {tuple(images.shape)}")
        if len(captions) != images.size(0):
            raise ValueError(f"{images.size(0)} images but {len(captions)} captions")
        device = self.device
        image_emb = self.model.encode_image(self.preprocess(images.to(device)))  # (B, D)
        text_emb = self.model.encode_text(self.tokenizer(list(captions)).to(device))  # (B, D)
        cos = F.cosine_similarity(image_emb.float(), text_emb.float(), dim=-1)
        return 100.0 * cos.clamp(min=0.0)
