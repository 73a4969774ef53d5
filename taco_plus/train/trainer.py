"""The training loop (the ``trainer`` config group): TACO's recipe, resumable.

One step: captions -> frozen text features (+ token weights) -> codec forward ->
loss terms; the codec loss and the entropy bottleneck's auxiliary loss are summed
and back-propagated once (the aux loss reaches only the ``.quantiles``, which only
the auxiliary Adam updates); gradients of the codec parameters are clipped by norm;
both optimisers step. MultiStepLR steps per epoch (TACO) or per step.

Checkpoints (``<run_dir>/checkpoints/last.pt`` every ``checkpoint_every`` steps and
at each epoch end; ``final.pt`` with updated entropy-coder CDFs at the end) are
taco-plus codec checkpoints carrying the whole training state: optimisers,
scheduler, step, epoch, position in the epoch, every rank's RNG states. Resuming
from one continues exactly: an interrupted and resumed run ends with the same
weights as an uninterrupted one. A non-finite loss stops the run before any weight
is touched, leaving the last good checkpoint in place.

A stop signal (``stop_signals``: SLURM pre-emption, ``scancel``, submitit's time-out
signal) ends the run at the next step boundary with ``last.pt`` written; see
:mod:`taco_plus.train.preemption` for the exit and requeue behaviour. A checkpoint
or log that cannot be written (disk full) stops the run with an ``OSError`` naming
the file; the previous ``last.pt`` stays intact.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from taco_plus.atomic import write_error
from taco_plus.checkpoint import FORMAT, read_checkpoint, save_codec
from taco_plus.train.distributed import (
    DistContext,
    all_ranks_finite,
    barrier,
    gather_objects,
    resolve_device,
)
from taco_plus.train.metrics_log import MetricLog
from taco_plus.train.preemption import IgnoreInWorkers, StopSignals, parse_signals
from taco_plus.train.state import (
    capture_rng,
    load_initial_weights,
    load_scheduler_state,
    restore_rng,
    scheduler_state,
)

logger = logging.getLogger(__name__)

TRAINABLE = ("all", "adapter")
PRECISIONS = ("fp32", "bf16")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped before updating the weights."""


@dataclass
class Components:
    """Everything a run trains with, built from the config by :func:`taco_plus.train.train`.

    ``*_config`` are the resolved plain-dict Hydra nodes stored in checkpoints.
    """

    model: nn.Module
    text_encoder: nn.Module
    weighting: Any
    data: Any
    loss: nn.Module
    optimizer: Callable  # partial: params -> torch.optim.Optimizer
    aux_optimizer: Callable
    scheduler: Callable  # partial: optimizer -> LR scheduler
    scheduler_unit: str
    clip_max_norm: float
    model_config: dict
    text_encoder_config: dict
    weighting_config: Optional[dict]
    config: Optional[dict] = None  # the whole run config, for the record


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    run_dir: Path
    final_checkpoint: Optional[Path]
    steps: int
    epochs_completed: int
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Progress:
    step: int = 0  # optimiser steps done
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # batches of the current epoch already consumed


class Trainer:
    """TACO training loop.

    Args:
        epochs: number of epochs (TACO: 50).
        max_steps: stop after this many steps (wins over ``epochs``; quickstart, smoke runs).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        precision: ``"fp32"`` or ``"bf16"`` (autocast of the codec forward).
        seed: base seed (rank r uses seed + r for its RNG streams).
        trainable: ``"all"`` or ``"adapter"`` (only ``model.adapter_parameters()``,
            plus the quantiles, which the auxiliary loss always trains).
        init_from: official TACO or taco-plus checkpoint to start from (fine-tuning).
        resume: a taco-plus training checkpoint to continue, or ``"auto"`` for
            ``<run_dir>/checkpoints/last.pt`` when it exists.
        log_every: steps per CSV/TensorBoard row.
        checkpoint_every: steps between ``last.pt`` writes.
        checkpoint_each_epoch: also write ``last.pt`` at every epoch end (off for tiny
            datasets whose epochs are a few steps long).
        tensorboard: write TensorBoard scalars.
        progress_bar: show a tqdm bar (rank 0).
        stop_signals: signals that stop the run at the next step boundary with a
            checkpoint (default SIGTERM, SIGUSR1, SIGUSR2; ``[]`` keeps their default action).
    """

    def __init__(
        self,
        epochs: int = 50,
        max_steps: Optional[int] = None,
        device: str = "auto",
        precision: str = "fp32",
        seed: int = 0,
        trainable: str = "all",
        init_from: Optional[str] = None,
        resume: Optional[str] = None,
        log_every: int = 50,
        checkpoint_every: int = 1000,
        tensorboard: bool = True,
        checkpoint_each_epoch: bool = True,
        progress_bar: bool = True,
        stop_signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1", "SIGUSR2"),
    ) -> None:
        if trainable not in TRAINABLE:
            raise ValueError(f"trainer.trainable must be one of {TRAINABLE}, got {trainable!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"trainer.precision must be one of {PRECISIONS}, got {precision!r}")
        if max_steps is None and epochs < 1:
            raise ValueError("set trainer.epochs >= 1 or trainer.max_steps")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"trainer.max_steps must be >= 1, got {max_steps}")
        if log_every < 1 or checkpoint_every < 1:
            raise ValueError("trainer.log_every and trainer.checkpoint_every must be >= 1")
        self.epochs, self.max_steps, self.device, self.precision = epochs, max_steps, device, precision
        self.seed, self.trainable, self.init_from, self.resume = seed, trainable, init_from, resume
        self.log_every, self.checkpoint_every = log_every, checkpoint_every
        self.checkpoint_each_epoch = checkpoint_each_epoch
        self.tensorboard, self.progress_bar = tensorboard, progress_bar
        self.stop_signals = parse_signals(stop_signals)

    # ----------------------------------------------------------- parameters
    def split_parameters(self, model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(codec parameters, entropy-bottleneck quantiles); freezes what is not trained."""
        named = dict(model.named_parameters())
        aux = [p for n, p in named.items() if n.endswith(".quantiles")]
        if not aux:
            raise ValueError("the model has no entropy-bottleneck '.quantiles' for the auxiliary optimiser")
        if self.trainable == "all":
            main = [p for n, p in named.items() if not n.endswith(".quantiles")]
        else:
            adapter = {id(p) for p in model.adapter_parameters()}
            main = [p for p in named.values() if id(p) in adapter]
            for p in named.values():
                p.requires_grad_(id(p) in adapter or any(p is q for q in aux))
        if not main:
            raise ValueError(f"trainer.trainable={self.trainable!r} selects no parameters")
        return main, aux

    # ---------------------------------------------------------------- fit
    def fit(self, parts: Components, run_dir: Path, ctx: Optional[DistContext] = None) -> TrainResult:
        """Trains ``parts.model`` and writes checkpoints and logs under ``run_dir``."""
        ctx = ctx or DistContext()
        run_dir = Path(run_dir)
        ckpt_dir = run_dir / "checkpoints"
        device = resolve_device(self.device, ctx)
        model = parts.model.to(device)
        parts.text_encoder.to(device)
        parts.loss.to(device)

        resume_path = self._resume_path(ckpt_dir)
        if self.init_from and resume_path is None:
            load_initial_weights(model, self.init_from)
        main_params, aux_params = self.split_parameters(model)
        optimizer = parts.optimizer(main_params)
        aux_optimizer = parts.aux_optimizer(aux_params)
        scheduler = parts.scheduler(optimizer)

        dataset = parts.data.train_dataset(seed=self.seed)
        loader, sampler = parts.data.train_loader(dataset, self.seed, ctx.rank, ctx.world_size)
        loader.worker_init_fn = IgnoreInWorkers(self.stop_signals, loader.worker_init_fn)
        steps_per_epoch = sampler.num_samples // parts.data.batch_size
        total = self.max_steps if self.max_steps is not None else self.epochs * steps_per_epoch

        progress = _Progress()
        if resume_path is not None:
            progress = self._restore(resume_path, parts, model, optimizer, aux_optimizer, scheduler, ctx)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
            if ctx.distributed else model

        log = MetricLog(run_dir, self.tensorboard and ctx.is_main, enabled=ctx.is_main, start_step=progress.step)
        bar = self._bar(total, progress.step, ctx)
        last_path: Optional[Path] = resume_path
        saved_step = progress.step if resume_path is not None else None
        logger.info("training %d steps (%d per epoch, %d process(es)), run folder %s",
                    total, steps_per_epoch, ctx.world_size, run_dir)
        model.train()
        parts.loss.train()

        def save_last() -> Path:
            nonlocal saved_step
            saved_step = progress.step
            return self._save(ckpt_dir / "last.pt", parts, model, optimizer, aux_optimizer, scheduler, progress, ctx)

        try:
            with StopSignals(self.stop_signals) as stop:
                while progress.step < total:
                    if progress.batch_in_epoch >= steps_per_epoch:  # epoch boundary
                        progress.epoch += 1
                        progress.batch_in_epoch = 0
                        if parts.scheduler_unit == "epoch":
                            with warnings.catch_warnings():  # right after a resume no step was taken yet
                                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                                scheduler.step()
                        if self.checkpoint_each_epoch:
                            last_path = save_last()
                        continue
                    sampler.set_epoch(progress.epoch, progress.batch_in_epoch * parts.data.batch_size)
                    dataset.set_epoch(progress.epoch)
                    for batch in loader:
                        terms = self._step(batch, parts, net, model, optimizer, aux_optimizer, main_params,
                                           device, ctx, progress, last_path)
                        progress.step += 1
                        progress.batch_in_epoch += 1
                        if parts.scheduler_unit == "step":
                            scheduler.step()
                        log.accumulate(terms)
                        if progress.step % self.log_every == 0 or progress.step == total:
                            row = log.flush(progress.step, progress.epoch, optimizer.param_groups[0]["lr"])
                            if bar is not None and row is not None:
                                bar.set_postfix(loss=f"{row['loss']:.4g}", bpp=f"{row['bpp']:.4g}")
                        if bar is not None:
                            bar.update(1)
                        if progress.step % self.checkpoint_every == 0:
                            last_path = save_last()
                        signum = stop.requested(ctx.distributed, device)
                        if signum:  # step boundary: checkpoint, then the signal's own outcome
                            if saved_step != progress.step:
                                last_path = save_last()
                            stop.hand_over(signum, progress.step, last_path)
                        if progress.step >= total:
                            break
        finally:
            log.close()
            if bar is not None:
                bar.close()

        # Entropy-coder CDFs for real bitstreams, then the final checkpoint.
        model.update(force=True)
        final = self._save(ckpt_dir / "final.pt", parts, model, optimizer, aux_optimizer, scheduler,
                           progress, ctx, final=True)
        return TrainResult(run_dir, final if ctx.is_main else None, progress.step, progress.epoch, log.rows)

    # ---------------------------------------------------------------- step
    def _step(self, batch, parts, net, model, optimizer, aux_optimizer, main_params, device, ctx, progress,
              last_path) -> dict[str, float]:
        x = batch["image"].to(device, non_blocking=True)
        captions = batch["caption"]
        with torch.no_grad():
            text = parts.text_encoder(captions)
            tokens, mask, weights = text.tokens, text.mask, None
            if parts.weighting is not None:
                tokens, mask, weights = parts.weighting.model_inputs(text, captions)
            weights = None if weights is None else weights.to(device)
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = net(x, tokens.to(device), mask.to(device), weights)
        terms = parts.loss(out, x, captions)
        aux = model.aux_loss()
        total = terms["loss"] + aux
        if not all_ranks_finite(total, ctx):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            kept = f"the last good checkpoint is {last_path}" if last_path else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"non-finite loss at step {progress.step + 1} (epoch {progress.epoch}): {values}, "
                f"aux={aux.item():.4g}; stopped before updating the weights; {kept}"
            )
        total.backward()
        if parts.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(main_params, parts.clip_max_norm)
        optimizer.step()
        aux_optimizer.step()
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["aux"] = float(aux.detach())
        return out

    # ---------------------------------------------------------- checkpoints
    def _save(self, path, parts, model, optimizer, aux_optimizer, scheduler, progress, ctx, final=False):
        rng = gather_objects(capture_rng(), ctx)  # every rank takes part
        if ctx.is_main:
            try:
                save_codec(
                    path, model, parts.model_config, parts.text_encoder_config, parts.weighting_config,
                    optimizer=optimizer.state_dict(), aux_optimizer=aux_optimizer.state_dict(),
                    scheduler=scheduler_state(scheduler), step=progress.step, epoch=progress.epoch,
                    batch_in_epoch=progress.batch_in_epoch, rng=rng, world_size=ctx.world_size,
                    seed=self.seed, final=final, config=parts.config,
                )
            except OSError as err:  # disk full, quota, read-only: the previous file is intact
                kept = f"{path} still holds the previous one" if path.exists() else "none was written yet"
                raise write_error(err, f"cannot write the step-{progress.step} checkpoint {path} ({kept})") from err
        barrier(ctx)
        return path

    def _resume_path(self, ckpt_dir: Path) -> Optional[Path]:
        if self.resume is None:
            return None
        if self.resume == "auto":
            path = ckpt_dir / "last.pt"
            return path if path.is_file() else None
        path = Path(self.resume)
        if not path.is_file():
            raise FileNotFoundError(f"trainer.resume: checkpoint not found: {path}")
        return path

    def _restore(self, path, parts, model, optimizer, aux_optimizer, scheduler, ctx) -> _Progress:
        ckpt = read_checkpoint(path)
        if ckpt.get("format") != FORMAT or "optimizer" not in ckpt:
            raise ValueError(f"{path} is not a taco-plus training checkpoint (use trainer.init_from for weights only)")
        if ckpt["model_config"] != parts.model_config:
            raise ValueError(
                f"cannot resume from {path}: it was trained with model config {ckpt['model_config']}, "
                f"this run builds {parts.model_config}"
            )
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        load_scheduler_state(scheduler, ckpt["scheduler"])
        rng = ckpt["rng"]
        if len(rng) == ctx.world_size:
            restore_rng(rng[ctx.rank])
        else:  # a different number of processes: data order holds, noise streams restart
            logger.warning("resuming %d-process state with %d processes: RNG streams reseeded",
                           len(rng), ctx.world_size)
            torch.manual_seed(self.seed + ctx.rank + int(ckpt["step"]))
        logger.info("resumed from %s at step %d (epoch %d)", path, ckpt["step"], ckpt["epoch"])
        return _Progress(int(ckpt["step"]), int(ckpt["epoch"]), int(ckpt["batch_in_epoch"]))

    def _bar(self, total: int, initial: int, ctx: DistContext):
        if not (self.progress_bar and ctx.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


__all__ = ["Components", "NonFiniteLossError", "TrainResult", "Trainer"]
