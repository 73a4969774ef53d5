"""Image in, ``.tacoz`` bytes out, and back: the codec a user runs.

:class:`TacoCodec` ties a loaded model to the text pipeline it was trained with
(caption encoder, optional token weighting), pads/crops images, and wraps the
entropy-coded strings in the checked container of :mod:`taco_plus.coding.bitstream`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import torch
from torch import Tensor

from taco_plus.checkpoint import LoadedCodec, instantiate_stored
from taco_plus.coding.bitstream import DEFAULT_MAX_PIXELS, Payload, model_fingerprint, pack, unpack
from taco_plus.images import crop, pad_to_multiple
from taco_plus.text.encoder import text_inputs


def run_on_one_thread(model: torch.nn.Module) -> None:
    """Makes the networks that give the entropy model's scales and means (``h_s``, the contexts,
    the entropy parameters), which the decoder recomputes, run on one CPU thread: oneDNN sums a
    1x1 convolution in a thread-count-dependent order, so kodim23 decoded with 2 threads from
    a 1-thread encode differed in 9 pixels. Idempotent."""
    names = ("h_s", "channel_context", "local_context", "entropy_parameters_anchor", "entropy_parameters_nonanchor")
    for part in (getattr(model, n, None) for n in names):
        for module in part if isinstance(part, torch.nn.ModuleList) else [part]:
            if module is not None and not getattr(module, "_one_thread", False):
                module._one_thread, saved = True, []
                module.register_forward_pre_hook(lambda m, a, s=saved: s.append(torch.get_num_threads()) or
                                                 torch.set_num_threads(1))
                module.register_forward_hook(lambda m, a, out, s=saved: torch.set_num_threads(s.pop()))


def deterministic():
    """cuDNN's deterministic kernels, no autotuning: on a GPU the decoder recomputes the entropy
    model's scales bit for bit as the encoder did (docs/coding.md). No effect on the CPU."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True,
                                      allow_tf32=torch.backends.cudnn.allow_tf32)


@dataclass
class EncodeResult:
    """One encoded image.

    ``x_hat`` is the reconstruction the decoder will produce (cropped), computed by
    the encoder from the same rounded latents; ``bpp`` counts the whole file.
    """

    data: bytes
    x_hat: Tensor
    height: int
    width: int
    encode_ms: float

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.height * self.width)


class TacoCodec:
    """A TACO model ready to code images.

    Args:
        loaded: a :class:`~taco_plus.checkpoint.LoadedCodec` (model + text configs).
        text_encoder: caption encoder; built from ``loaded.text_encoder_config`` when None.
        weighting: token weighting; built from ``loaded.weighting_config`` when None.
        max_pixels: :meth:`decode` refuses files announcing more pixels (H x W) than this,
            before allocating anything (see :mod:`taco_plus.coding.bitstream`).
    """

    def __init__(
        self, loaded: LoadedCodec, text_encoder=None, weighting=None, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self.model = loaded.model.eval()
        run_on_one_thread(self.model)  # decoding must not depend on the thread count (docs/coding.md)
        self.max_pixels = max_pixels
        self.loaded = loaded
        if text_encoder is not None:
            self.text_encoder = text_encoder
        if weighting is not None:
            self.weighting = weighting
        self.fingerprint = model_fingerprint(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def text_encoder(self):
        encoder = instantiate_stored(self.loaded.text_encoder_config, "text_encoder_config")
        if encoder is None:
            raise ValueError("checkpoint names no text encoder")
        return encoder

    @cached_property
    def weighting(self):
        return instantiate_stored(self.loaded.weighting_config, "weighting_config")

    def encode_text(self, caption: str) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """Caption -> (features (1, L, D), mask (1, L), weights (1, L) or None): :func:`taco_plus.text.text_inputs`."""
        return text_inputs(self.text_encoder, self.weighting, [caption], self.device)[:3]

    @torch.no_grad()
    @deterministic()
    def encode(self, image: Tensor, caption: str) -> EncodeResult:
        """Encodes one image (3, H, W) or (1, 3, H, W) in [0, 1] with its caption."""
        start = time.perf_counter()
        x = image.unsqueeze(0) if image.dim() == 3 else image
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"expected one RGB image (3, H, W), got {tuple(image.shape)}")
        h, w = x.shape[-2:]
        x_pad = pad_to_multiple(x.to(self.device, torch.float32), 64)
        text, mask, weights = self.encode_text(caption)
        out = self.model.compress(x_pad, text, mask, weights)
        y_strings, z_strings = out["strings"]
        data = pack(Payload(h, w, self.fingerprint, y_strings[0], z_strings[0]))
        encode_ms = 1000 * (time.perf_counter() - start)
        # The encoder's own prediction of the decoded image, from the same latents.
        x_hat = self.model.g_s(out["y_hat"])
        return EncodeResult(data, crop(x_hat, (h, w)).clamp(0, 1), h, w, encode_ms)

    @torch.no_grad()
    @deterministic()
    def decode(self, data: bytes) -> Tensor:
        """Decodes ``.tacoz`` bytes to a (1, 3, H, W) image in [0, 1]. Takes no text."""
        payload = unpack(data, expected_fingerprint=self.fingerprint, max_pixels=self.max_pixels)
        x_hat = self.model.decompress([[payload.y_string], [payload.z_string]], payload.z_shape)
        return crop(x_hat["x_hat"], (payload.height, payload.width)).clamp(0, 1)

    @torch.no_grad()
    @deterministic()
    def estimate_bits(self, image: Tensor, caption: str) -> float:
        """Likelihood estimate of the rate, in bits (eval-mode forward)."""
        x = image.unsqueeze(0) if image.dim() == 3 else image
        x_pad = pad_to_multiple(x.to(self.device, torch.float32), 64)
        text, mask, weights = self.encode_text(caption)
        out = self.model(x_pad, text, mask, weights)
        return float(sum((-torch.log2(l)).sum() for l in out["likelihoods"].values()))

