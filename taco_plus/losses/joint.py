"""TACO's joint image-text loss on frozen CLIP towers (Lee et al., ICML 2024, Eq. 5).

``L_joint = CLIPcontrastive(t, e(x_hat)) + beta * ||e(x_hat) - e(x)||_2`` with L2-normalised
CLIP embeddings, the temperature held at exp(2.6592), the norm over the whole batch (not
squared, not averaged), captions cut to ``context_length`` tokens (cuts counted and logged);
details in docs/training.md#loss. Under ``torch.distributed`` every term is over the
*global* batch: the embeddings of all ranks are gathered with gradients (open_clip's
``gather_with_grad``), so each rank holds the single-process loss, and DDP's average of the
all-gather's summed gradients is exactly the single-process gradient.
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

logger = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def gather_batch(x: Tensor) -> Tensor:
    """(B, ...) on each rank -> (world_size * B, ...) in rank order; gradients flow back
    to each rank's own rows. The identity outside ``torch.distributed``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return torch.cat(dist_nn.all_gather(x), dim=0)


def clip_contrastive(text: Tensor, image: Tensor, logit_scale: float) -> Tensor:
    """Symmetric InfoNCE of matching (text_i, image_i) pairs; inputs (B, D) normalised."""
    logits = logit_scale * text @ image.t()  # (B, B), row i: caption i vs every image
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


class ClipJointLoss(nn.Module):
    """``CLIPcontrastive(t, e(x_hat)) + beta * ||e(x_hat) - e(x)||_2`` (module docstring).

    Args:
        model_name, pretrained: the CLIP model, as for :func:`taco_plus.text.load_clip`.
        beta: weight of the embedding-distance term (40).
        logit_scale: log of the constant temperature (2.6592).
        context_length: caption tokens, start/end included (38: TACO's; 77, CLIP's limit,
            for long captions); None: the tower's full context.
        clip_model: an already-loaded open_clip model instead of loading one.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: Optional[str] = "openai",
        beta: float = 40.0,
        logit_scale: float = 2.6592,
        context_length: Optional[int] = 38,
        *,
        clip_model: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        from taco_plus.text import load_clip

        self.clip = clip_model if clip_model is not None else load_clip(model_name, pretrained)
        self.clip.eval().requires_grad_(False)
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
        # What the cut to context_length drops (captions seen, captions cut, BPE pieces dropped).
        self.captions_seen = self.captions_cut = self.pieces_cut = 0
        self._next_report = 1

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
        from taco_plus.text import tokenize

        layouts = [tokenize(c, self.context_length, pad="zero") for c in captions]  # EOT kept
        self._count_cuts([layout.truncated for layout in layouts])
        # encode_text adds all 77 positional embeddings: pad with 0 after the EOT; the
        # causal mask keeps those positions out of the pooled (EOT) state.
        tokens = torch.tensor([layout.ids + [0] * (self.full_context - len(layout)) for layout in layouts])
        return F.normalize(self.clip.encode_text(tokens.to(self.mean.device)), dim=-1)

    def _count_cuts(self, truncated: list[int]) -> None:
        """Counts what the cut drops; logs the totals when the number of cut captions doubles."""
        self.captions_seen += len(truncated)
        self.captions_cut += sum(n > 0 for n in truncated)
        self.pieces_cut += sum(truncated)
        if self.captions_cut >= self._next_report:
            logger.info(
                "joint loss: %d of %d captions cut to %d tokens so far (%d BPE pieces dropped; "
                "the adapter's text features are not affected)",
                self.captions_cut, self.captions_seen, self.context_length, self.pieces_cut,
            )
            self._next_report = 2 * self.captions_cut

    def forward(self, x_hat: Tensor, x: Tensor, captions: Sequence[str]) -> dict[str, Tensor]:
        """Returns ``{"joint", "contrastive", "embedding_distance"}`` (scalars)."""
        if len(captions) != x_hat.shape[0]:
            raise ValueError(f"{len(captions)} captions for a batch of {x_hat.shape[0]} images")
        e_hat = self.image_embedding(x_hat)  # (B, D)
        with torch.no_grad():
            e = self.image_embedding(x)  # (B, D), the target: no gradient
        t = self.text_embedding(captions).to(e_hat.dtype)  # (B, D)
        # The global batch: (B, 3, D) per rank -> (world_size * B, 3, D), one collective.
        e_hat, e, t = gather_batch(torch.stack([e_hat, e, t], dim=1)).unbind(1)
        contrastive = clip_contrastive(t, e_hat, self.logit_scale)
        distance = torch.linalg.vector_norm(e_hat - e)  # over the whole global batch, not squared
        return {"joint": contrastive + self.beta * distance, "contrastive": contrastive, "embedding_distance": distance}

    def extra_repr(self) -> str:
        from taco_plus.text import clip_source

        source = clip_source(self.clip)
        return (f"{source.describe() if source else self.model_name}, beta={self.beta}, "
                f"captions cut to {self.context_length} tokens")
