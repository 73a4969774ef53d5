"""Opt-in TEST-SET SELECTION, as TACO's official script does: code test images after every epoch and
keep the checkpoint with the best mean metric (optimistic; docs/training.md, "Test-set selection")."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import torch

from taco_plus.checkpoint import LoadedCodec, read_checkpoint, save_codec

logger = logging.getLogger(__name__)
HIGHER_IS_BETTER = {"psnr": True, "ms_ssim": True, "bpp": False, "lpips": False}


class TestSetSelection:
    """Keeps ``checkpoints/best_on_test_set.pt``: the epoch with the best mean ``metric`` on ``image_dir``."""

    def __init__(self, image_dir: str, captions: str, metric: str = "psnr") -> None:
        from taco_plus.captions.sources import open_caption_source
        from taco_plus.data import CaptionedImageDataset

        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"trainer.test_set_selection.metric must be one of {list(HIGHER_IS_BETTER)}, got {metric!r}")
        self.metric, self.image_dir, self.best = metric, str(image_dir), None
        self.dataset = CaptionedImageDataset(image_dir, open_caption_source(captions), caption_choice="first",
                                             bad_caption="keep", bad_image="strict")

    @torch.no_grad()
    def after_epoch(self, ckpt_dir: Path, model: torch.nn.Module, parts, epoch: int, step: int) -> None:
        """Codes the images with a copy of ``model``; saves it when it beats the best so far."""
        from taco_plus.codec import TacoCodec
        from taco_plus.metrics.distortion import ms_ssim, psnr

        path = Path(ckpt_dir) / "best_on_test_set.pt"
        if self.best is None and path.is_file():  # a resumed run
            self.best = read_checkpoint(path)["test_set_selection"]["value"]
        model = copy.deepcopy(model).eval()  # the training model keeps its mode and buffers
        model.update(force=True)  # like final.pt, the file codes real bitstreams
        codec = TacoCodec(LoadedCodec(model, parts.text_encoder_config, parts.weighting_config),
                          text_encoder=parts.text_encoder, weighting=parts.weighting)
        lpips, rows = getattr(parts.loss, "lpips", None), []
        for item in self.dataset:
            x = item["image"][None].to(codec.device)
            encoded = codec.encode(x, item["caption"])
            x_hat = codec.decode(encoded.data)
            rows.append({"bpp": encoded.bpp, "psnr": psnr(x, x_hat), "ms_ssim": ms_ssim(x, x_hat),
                         "lpips": float(lpips(x_hat, x).mean()) if lpips is not None else math.nan})
        values = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        value = values[self.metric]
        if math.isnan(value):
            raise ValueError(f"trainer.test_set_selection.metric={self.metric} is not computed here "
                             "(lpips needs loss.k_p > 0; ms_ssim images of 161 px or more)")
        better = self.best is None or (value > self.best) == HIGHER_IS_BETTER[self.metric] and value != self.best
        logger.warning("TEST-SET SELECTION, epoch %d on %s: %s%s", epoch, self.image_dir,
                       ", ".join(f"{k} {v:.4f}" for k, v in values.items()), f" -> best so far, {path}" * better)
        if better:
            self.best = value
            save_codec(path, model, parts.model_config, parts.text_encoder_config, parts.weighting_config,
                       config=parts.config, test_set_selection={"metric": self.metric, "value": value, "epoch": epoch,
                                                                "step": step, "images": self.image_dir, "values": values})
