"""TACO's joint image-text loss on frozen CLIP towers (Lee et al., ICML 2024, Eq. 5; docs/training.md#loss):
``L_joint = CLIPcontrastive(t, e(x_hat)) + beta * ||e(x_hat) - e(x)||_2`` with L2-normalised CLIP embeddings,
the temperature held at exp(2.6592), the norm over the whole batch (not squared, not averaged). Under
``torch.distributed`` every term is over the *global* batch: the embeddings of all ranks are gathered with
gradients (open_clip's ``gather_with_grad``), so DDP's average gradient is exactly the single-process one.
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

from taco_plus.text.encoder import ClipEmbedding

logger = logging.getLogger(__name__)


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


class ClipJointLoss(ClipEmbedding):
    """``CLIPcontrastive(t, e(x_hat)) + beta * ||e(x_hat) - e(x)||_2`` (module docstring); embeddings:
    :class:`~taco_plus.text.ClipEmbedding` (bilinear resize, differentiable).

    Args:
        model_name, pretrained: the CLIP model, as for :func:`taco_plus.text.load_clip`.
        beta: weight of the embedding-distance term (40).
        logit_scale: log of the constant temperature (2.6592).
        context_length: caption tokens, start/end included (38: TACO's; 77, CLIP's limit,
            for long captions); None: the tower's full context.
        clip_model: an already-loaded open_clip model instead of loading one.
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai", beta: float = 40.0,
                 logit_scale: float = 2.6592, context_length: Optional[int] = 38, *,
                 clip_model: Optional[nn.Module] = None) -> None:
        from taco_plus.text import load_clip

        super().__init__(clip_model if clip_model is not None else load_clip(model_name, pretrained), context_length)
        self.beta, self.logit_scale, self.model_name = float(beta), math.exp(logit_scale), model_name
        # What the cut to context_length drops (captions seen, captions cut, BPE pieces dropped).
        self.captions_seen = self.captions_cut = self.pieces_cut = 0
        self._next_report = 1

    def cut(self, captions: Sequence[str], layouts) -> None:
        """Counts what the cut drops; logs the totals when the number of cut captions doubles."""
        self.captions_seen += len(layouts)
        self.captions_cut += sum(t.truncated > 0 for t in layouts)
        self.pieces_cut += sum(t.truncated for t in layouts)
        if self.captions_cut >= self._next_report:
            logger.info("joint loss: %d of %d captions cut to %d tokens so far (%d BPE pieces dropped; the adapter's "
                        "text features are not affected)", self.captions_cut, self.captions_seen, self.context_length,
                        self.pieces_cut)
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
        return f"{self.source_name(self.model_name)}, beta={self.beta}, captions cut to {self.context_length} tokens"
