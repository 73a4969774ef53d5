"""CLIP score of a reconstruction against its caption: ``100 · max(cos(e_I(x̂), e_T(caption)), 0)``
(torchmetrics' ``CLIPScore`` convention; Hessel et al., 2021, weight the same cosine by 2.5): does the
decoded image still show what the caption says? Captions are tokenized as the codec's text encoder
tokenizes them, to the CLIP model's context length; a longer caption is cut there, and said so.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from taco_plus.text.encoder import ClipEmbedding

logger = logging.getLogger(__name__)


class ClipScore(ClipEmbedding):
    """CLIP score with a frozen open_clip ``model`` (image and text towers) and the ``name`` recorded in
    results files; embeddings: :class:`~taco_plus.text.ClipEmbedding` with open_clip's evaluation transform.
    :attr:`truncated` counts the captions cut to the model's context length."""

    def __init__(self, model: nn.Module, name: str = "clip") -> None:
        super().__init__(model, eval_transform=True)
        self.name, self.truncated = name, 0

    @property
    def model(self) -> nn.Module:
        return self.clip

    @classmethod
    def load(cls, model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai", device: str = "cpu") -> "ClipScore":
        """Through :func:`taco_plus.text.clip_loading.load_clip`, which fails fast, saying what to
        download, when the weights are not on the machine."""
        from taco_plus.text.clip_loading import load_clip

        score = cls(load_clip(model_name, pretrained, device))
        score.name = score.source_name(f"{model_name} pretrained={pretrained!r}")
        return score

    def cut(self, captions: Sequence[str], layouts) -> None:
        for caption, layout in ((c, t) for c, t in zip(captions, layouts) if t.truncated):
            self.truncated += 1  # warned once, counted in meta.notes
            logger.log(logging.WARNING if self.truncated == 1 else logging.DEBUG, "CLIP score: caption cut to %d "
                       "tokens, %d BPE pieces dropped: %.60r", len(layout), layout.truncated, caption)

    @torch.no_grad()
    def forward(self, images: Tensor, captions: Sequence[str]) -> Tensor:
        """CLIP scores, (B,), of ``images`` (B, 3, H, W) in [0, 1] against ``captions``."""
        if len(captions) != images.size(0):
            raise ValueError(f"{images.size(0)} images but {len(captions)} captions")
        image = self.image_embedding(images.to(next(self.clip.parameters()).device).float())  # (B, D)
        return 100.0 * (image.float() * self.text_embedding(captions).float()).sum(-1).clamp(min=0.0)
