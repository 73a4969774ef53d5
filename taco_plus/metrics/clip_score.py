"""CLIP score of a reconstruction against its caption: ``100 · max(cos(e_I(x̂), e_T(caption)), 0)``
(torchmetrics' ``CLIPScore`` convention; Hessel et al., 2021, "CLIPScore: A Reference-free
Evaluation Metric for Image Captioning", weight the same cosine by 2.5). It asks whether the
decoded image still shows what the caption says: the semantic fidelity TACO's text guidance targets.
Captions are tokenized as the codec's text encoder tokenizes them (:mod:`taco_plus.text.tokenizer`: the
reference's cleaning), to the CLIP model's context length; a longer caption is cut there, and said so.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from taco_plus.text.tokenizer import tokenize

logger = logging.getLogger(__name__)


class ClipScore(nn.Module):
    """CLIP score with a frozen open_clip ``model`` (image and text towers) and the ``name`` recorded in
    results files; :attr:`truncated` counts the captions cut to the model's context length."""

    def __init__(self, model: nn.Module, name: str = "clip") -> None:
        super().__init__()
        import open_clip

        self.model = model.eval().requires_grad_(False)
        self.name, self.truncated = name, 0
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = list(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = list(cfg.get("std", open_clip.OPENAI_DATASET_STD))

    @classmethod
    def load(cls, model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai", device: str = "cpu") -> "ClipScore":
        """Through :func:`taco_plus.text.clip_loading.load_clip`, which fails fast, saying what to
        download, when the weights are not on the machine."""
        from taco_plus.text.clip_loading import clip_source, load_clip

        model = load_clip(model_name, pretrained, device)
        source = clip_source(model)
        name = source.describe() if source is not None else f"{model_name} pretrained={pretrained!r}"
        return cls(model, name=name)

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
        layouts = [tokenize(c, self.model.context_length, pad="zero") for c in captions]  # open_clip's layout
        for caption, layout in ((c, t) for c, t in zip(captions, layouts) if t.truncated):
            self.truncated += 1  # warned once, counted in meta.notes
            logger.log(logging.WARNING if self.truncated == 1 else logging.DEBUG, "CLIP score: caption cut to %d "
                       "tokens, %d BPE pieces dropped: %.60r", len(layout), layout.truncated, caption)
        image_emb = self.model.encode_image(self.preprocess(images.to(device)))  # (B, D)
        text_emb = self.model.encode_text(torch.tensor([t.ids for t in layouts], device=device))  # (B, D)
        return 100.0 * F.cosine_similarity(image_emb.float(), text_emb.float(), dim=-1).clamp(min=0.0)
