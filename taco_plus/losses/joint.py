"""TACO's joint image-text loss on frozen CLIP towers.

Lee et al., ICML 2024, Eq. (5): with CLIP image embedding ``e(.)`` and text
embedding ``t`` (both L2-normalised, ViT-B/32, frozen),

    L_joint = CLIPcontrastive(t, e(x_hat)) + beta * || e(x_hat) - e(x) ||_2

* the contrastive term is CLIP's symmetric cross-entropy over the batch, logits
  ``s * t @ e(x_hat)^T`` with the temperature held constant at ``s = exp(2.6592)``
  (about 14.3, CLIP ViT-B/32's initial value, as TACO's code does);
* the norm is taken over the whole (B, D) difference: not squared, not averaged;
* images are resized (shorter side, bilinear, antialiased) to the tower's input size,
  centre-cropped and normalised with CLIP's mean/std, like CLIP's preprocessing;
* captions are truncated to ``context_length`` tokens (38 in TACO), end-of-text kept.

Gradients flow through the frozen image tower into ``x_hat`` only.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_contrastive(text: Tensor, image: Tensor, logit_scale: float) -> Tensor:
    """Symmetric InfoNCE of matching (text_i, image_i) pairs; inputs (B, D) normalised."""
    logits = logit_scale * text @ image.t()  # (B, B), row i: caption i vs every image
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


class ClipJointLoss(nn.Module):
    """``CLIPcontrastive(t, e(x_hat)) + beta * ||e(x_hat) - e(x)||_2`` (see module docstring).

    Args:
        model_name: open_clip architecture (``"ViT-B-32"``; ``"taco-tiny-clip"`` for tests).
        pretrained: weights, as for :func:`taco_plus.text.load_clip` (None: random init).
        beta: weight of the embedding-distance term (40).
        logit_scale: log of the constant temperature (2.6592).
        context_length: caption length in tokens, start/end included (38); None uses the
            tower's full context.
        clip_model: an already-loaded open_clip model to use instead of loading one.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: Optional[str] = "openai",
        beta: float = 40.0,
        logit_scale: float = 2.6592,
        context_length: Optional[int] = 38,
        clip_model: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        import open_clip

        from taco_plus.text import load_clip

        self.clip = clip_model if clip_model is not None else load_clip(model_name, pretrained)
        self.clip.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        full = int(getattr(self.clip, "context_length", 77))
        if context_length is not None and not 2 <= context_length <= full:
            raise ValueError(f"context_length must lie in [2, {full}], got {context_length}")
        self.context_length, self.full_context = context_length or full, full
        self.beta = float(beta)
        self.logit_scale = math.exp(logit_scale)
        size = self.clip.visual.image_size
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        mean = getattr(self.clip.visual, "image_mean", None) or OPENAI_MEAN
        std = getattr(self.clip.visual, "image_std", None) or OPENAI_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.model_name = model_name

    def train(self, mode: bool = True) -> "ClipJointLoss":
        super().train(mode)
        self.clip.eval()  # frozen towers
        return self

    def preprocess(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, 224, 224) CLIP input."""
        h, w = self.image_size
        x = TF.resize(x, [min(h, w)], antialias=True)  # shorter side -> 224, bilinear
        x = TF.center_crop(x, [h, w])
        return (x - self.mean) / self.std

    def image_embedding(self, x: Tensor) -> Tensor:
        """L2-normalised CLIP image embeddings (B, D); differentiable in ``x``."""
        return F.normalize(self.clip.encode_image(self.preprocess(x)), dim=-1)

    @torch.no_grad()
    def text_embedding(self, captions: Sequence[str]) -> Tensor:
        """L2-normalised CLIP text embeddings (B, D) of captions cut to ``context_length``."""
        device = self.mean.device
        tokens = self.tokenizer(list(captions), context_length=self.context_length)  # (B, Lc), EOT kept
        # encode_text adds all 77 positional embeddings: pad with 0 after the EOT; the
        # causal mask keeps those positions out of the pooled (EOT) state.
        tokens = F.pad(tokens, (0, self.full_context - tokens.shape[1])).to(device)
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def forward(self, x_hat: Tensor, x: Tensor, captions: Sequence[str]) -> dict[str, Tensor]:
        """Returns ``{"joint", "contrastive", "embedding_distance"}`` (scalars)."""
        if len(captions) != x_hat.shape[0]:
            raise ValueError(f"{len(captions)} captions for a batch of {x_hat.shape[0]} images")
        e_hat = self.image_embedding(x_hat)  # (B, D)
        with torch.no_grad():
            e = self.image_embedding(x)  # (B, D), the target: no gradient
        t = self.text_embedding(captions).to(e_hat.dtype)  # (B, D)
        contrastive = clip_contrastive(t, e_hat, self.logit_scale)
        distance = torch.linalg.vector_norm(e_hat - e)  # over the whole batch, not squared
        return {"joint": contrastive + self.beta * distance, "contrastive": contrastive, "embedding_distance": distance}

    def extra_repr(self) -> str:
        from taco_plus.text import clip_source

        source = clip_source(self.clip)
        return f"{source.describe() if source else self.model_name}, beta={self.beta}, context={self.context_length}"
