"""The training loop (the ``trainer`` config group): TACO's recipe, one :meth:`Trainer.step` as its official
loop; checkpoints carry the whole training state (optimisers, scheduler, position, every rank's RNG states),
so a resumed run ends bitwise equal to an uninterrupted one. Stop signals, NaN stops, full disks: docs/training.md.
"""

from __future__ import annotations

import logging
import random
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from taco_plus.atomic import write_error
from taco_plus.checkpoint import FORMAT, read_checkpoint, save_codec
from taco_plus.distributed import DistContext, resolve_device
from taco_plus.text import text_inputs
from taco_plus.train.metrics_log import MetricLog
from taco_plus.train.preemption import IgnoreInWorkers, StopSignals, parse_signals
from taco_plus.train.resume import resume_changes, write_run_config
from taco_plus.train.selection import TestSetSelection

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped before updating the weights."""


@dataclass
class Components:
    """Everything a run trains with, built by :func:`taco_plus.train.build_components`;
    ``*_config`` are the resolved plain-dict nodes stored in checkpoints."""

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
    final_checkpoint: Optional[Path]  # rank 0 only
    steps: int
    epochs_completed: int
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Progress:
    """Where a run is; checkpoints store it."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # batches of the current epoch already consumed


def capture_rng() -> dict[str, Any]:
    """This process's RNG states in ``weights_only``-loadable form (numpy's key as a tensor)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_initial_weights(model: nn.Module, path: str | Path) -> None:
    """Loads an official TACO or taco-plus checkpoint into ``model`` for fine-tuning. The backbone must
    match exactly; adapter tensors (``model.is_adapter_key``) may differ (a Linformer adapter from an
    official full-attention checkpoint): missing ones keep their initialisation, extra ones are ignored."""
    from taco_plus.models.official import normalise_state_dict

    checkpoint = read_checkpoint(path)
    official = checkpoint.get("format") != FORMAT
    state = normalise_state_dict(checkpoint) if official else checkpoint["state_dict"]
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"cannot initialise the model from {path}: {err}") from err
    missing = [k for k in result.missing_keys if not model.is_adapter_key(k)]
    unexpected = [k for k in result.unexpected_keys if not model.is_adapter_key(k)]
    if missing or unexpected:
        keys = [f"{k[:5]}{'...' if len(k) > 5 else ''}" for k in (missing, unexpected)]
        raise ValueError(f"{path} does not fit this model outside the text adapter: missing {keys[0]}, unexpected {keys[1]}")
    logger.info("initialised from %s checkpoint %s", "official TACO" if official else "taco-plus", path)
    if result.missing_keys:
        logger.warning("%d adapter tensors not in %s keep their initialisation, e.g. %s",
                       len(result.missing_keys), path, result.missing_keys[:3])
    if result.unexpected_keys:
        logger.warning("%d adapter tensors of %s do not exist in this model and are ignored, e.g. %s",
                       len(result.unexpected_keys), path, result.unexpected_keys[:3])


class Trainer:
    """TACO training loop; its arguments are the ``trainer`` config group's keys (docs/training.md)."""

    def __init__(self, epochs: int = 50, max_steps: Optional[int] = None, device: str = "auto",
                 precision: str = "fp32", seed: int = 0, trainable: str = "all", init_from: Optional[str] = None,
                 resume: Optional[str] = None, log_every: int = 50, checkpoint_every: int = 1000,
                 tensorboard: bool = True, checkpoint_each_epoch: bool = True, progress_bar: bool = True,
                 stop_signals: tuple[str, ...] = ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2"),
                 allow_resume_changes: bool = False, test_set_selection: Optional[Mapping[str, Any]] = None) -> None:
        if trainable not in ("all", "adapter") or precision not in ("fp32", "bf16"):
            raise ValueError(f"trainer.trainable must be 'all' or 'adapter' (got {trainable!r}) and "
                             f"trainer.precision 'fp32' or 'bf16' (got {precision!r})")
        if (max_steps is None and epochs < 1) or (max_steps is not None and max_steps < 1):
            raise ValueError(f"set trainer.epochs >= 1 or trainer.max_steps >= 1, got {epochs}, {max_steps}")
        if log_every < 1 or checkpoint_every < 1:
            raise ValueError("trainer.log_every and trainer.checkpoint_every must be >= 1")
        self.epochs, self.max_steps, self.device, self.precision = epochs, max_steps, device, precision
        self.seed, self.trainable, self.init_from, self.resume = seed, trainable, init_from, resume
        self.log_every, self.checkpoint_every = log_every, checkpoint_every
        self.checkpoint_each_epoch = checkpoint_each_epoch
        self.tensorboard, self.progress_bar = tensorboard, progress_bar
        self.stop_signals = parse_signals(stop_signals)
        self.allow_resume_changes = allow_resume_changes
        selection = dict(test_set_selection or {})
        self.selection = TestSetSelection(**selection) if selection.get("image_dir") else None

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

    def fit(self, parts: Components, run_dir: Path, ctx: Optional[DistContext] = None) -> TrainResult:
        """Trains ``parts.model``; checkpoints go to ``run_dir/checkpoints``, logs to ``run_dir``."""
        ctx, run_dir = ctx or DistContext(), Path(run_dir)
        ckpt_dir, device = run_dir / "checkpoints", resolve_device(self.device, ctx)
        model = parts.model.to(device)
        parts.text_encoder.to(device)
        parts.loss.to(device)

        resume_path = self._resume_path(ckpt_dir)
        if self.init_from and resume_path is None:
            load_initial_weights(model, self.init_from)
        main_params, aux_params = self.split_parameters(model)
        optimizer, aux_optimizer = parts.optimizer(main_params), parts.aux_optimizer(aux_params)
        scheduler = parts.scheduler(optimizer)
        states = {"optimizer": optimizer, "aux_optimizer": aux_optimizer, "scheduler": scheduler}

        dataset = parts.data.train_dataset(seed=self.seed)
        loader, sampler = parts.data.train_loader(dataset, self.seed, ctx.rank, ctx.world_size)
        loader.worker_init_fn = IgnoreInWorkers(self.stop_signals)
        steps_per_epoch = sampler.num_samples // parts.data.batch_size
        total = self.max_steps if self.max_steps is not None else self.epochs * steps_per_epoch

        progress = self._restore(resume_path, parts, model, states, ctx) if resume_path else Progress()
        if resume_path and ctx.is_main and (parts.config or {}).get("resume_changes"):
            write_run_config(run_dir, parts.config)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
            if ctx.distributed else model
        log = MetricLog(run_dir, self.tensorboard and ctx.is_main, enabled=ctx.is_main, start_step=progress.step)
        bar = tqdm(total=total, initial=progress.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.progress_bar and ctx.is_main))
        last_path, saved_step = resume_path, progress.step if resume_path else None
        logger.info("training %d steps (%d per epoch, %d process(es)), run folder %s",
                    total, steps_per_epoch, ctx.world_size, run_dir)
        model.train()
        parts.loss.train()

        def save_last() -> Path:
            nonlocal saved_step
            saved_step = progress.step
            return self._save(ckpt_dir / "last.pt", parts, model, states, progress, ctx)

        try:
            with StopSignals(self.stop_signals) as stop:
                while progress.step < total:
                    if progress.batch_in_epoch >= steps_per_epoch:  # epoch boundary
                        progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
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
                        terms = self.step(batch, parts, model, (optimizer, aux_optimizer), net, ctx, progress, last_path)
                        progress.step, progress.batch_in_epoch = progress.step + 1, progress.batch_in_epoch + 1
                        if self.selection and ctx.is_main and progress.batch_in_epoch == steps_per_epoch:
                            self.selection.after_epoch(ckpt_dir, model, parts, progress.epoch, progress.step)
                        if parts.scheduler_unit == "step":
                            scheduler.step()
                        log.accumulate(terms)
                        if progress.step % self.log_every == 0 or progress.step == total:
                            row = log.flush(progress.step, progress.epoch, optimizer.param_groups[0]["lr"])
                            if row is not None:
                                bar.set_postfix(loss=f"{row['loss']:.4g}", bpp=f"{row['bpp']:.4g}")
                        bar.update(1)
                        if progress.step % self.checkpoint_every == 0:
                            last_path = save_last()
                        if signum := stop.requested(ctx.distributed, device):  # checkpoint, then the signal's outcome
                            if saved_step != progress.step:
                                last_path = save_last()
                            stop.hand_over(signum, progress.step, last_path)
                        if progress.step >= total:
                            break
        except BaseException as err:  # data-loader workers ignore stop signals: free their iterator now (its
            traceback.clear_frames(err.__traceback__)  # frames hold it), not at exit, where SIGTERM is ignored
            raise
        finally:
            log.close()
            bar.close()

        model.update(force=True)  # entropy-coder CDFs: final.pt codes real bitstreams
        final = self._save(ckpt_dir / "final.pt", parts, model, states, progress, ctx, final=True)
        return TrainResult(run_dir, final if ctx.is_main else None, progress.step, progress.epoch, log.rows)

    def step(self, batch: Mapping[str, Any], parts: Components, model: nn.Module, optimizers: tuple, net=None,
             ctx: DistContext = DistContext(), progress: Optional[Progress] = None,
             last_path: Optional[Path] = None) -> dict[str, float]:
        """One training step of ``model`` on ``batch`` (``{"image", "caption"}``) with ``optimizers`` (codec,
        auxiliary); ``net`` runs the forward pass (``model`` wrapped in DDP or compiled; default ``model``).
        ``progress`` and ``last_path`` only name where a non-finite loss stopped. Returns the loss terms."""
        device, progress = next(model.parameters()).device, progress or Progress()
        (optimizer, aux_optimizer), net = optimizers, model if net is None else net
        x, captions = batch["image"].to(device, non_blocking=True), batch["caption"]
        text = text_inputs(parts.text_encoder, parts.weighting, captions, device)
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        # bf16 autocast of the codec forward; the model keeps its entropy model in fp32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = net(x, *text)
        terms = parts.loss(out, x, captions)
        finite = torch.isfinite(terms["loss"].detach()).to(torch.int32).reshape(1)
        if ctx.distributed:  # every rank stops together
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        kept = f"the last good checkpoint is {last_path}" if last_path else "no checkpoint was written yet"
        if not finite.item():
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            raise NonFiniteLossError(f"non-finite loss at step {progress.step + 1} (epoch {progress.epoch}): "
                                     f"{values}; stopped before updating the weights; {kept}")
        terms["loss"].backward()
        if parts.clip_max_norm > 0:  # every parameter, the quantiles included (their main-loss gradient is 0)
            torch.nn.utils.clip_grad_norm_(model.parameters(), parts.clip_max_norm)
        optimizer.step()
        aux = model.aux_loss()  # after the codec step, from its updated entropy bottleneck (the same on every rank)
        if not torch.isfinite(aux.detach()):
            raise NonFiniteLossError(f"non-finite auxiliary loss {aux.item()} after step {progress.step + 1}; {kept}")
        aux.backward()
        aux_optimizer.step()
        return {**{k: float(v.detach()) for k, v in terms.items()}, "aux": float(aux.detach())}

    def _save(self, path: Path, parts: Components, model: nn.Module, states: dict, progress: Progress,
              ctx: DistContext, final: bool = False) -> Path:
        rng = [capture_rng()]
        if ctx.distributed:  # every rank's streams, in rank order
            rng = [None] * ctx.world_size
            dist.all_gather_object(rng, capture_rng())
        if ctx.is_main:
            try:
                save_codec(path, model, parts.model_config, parts.text_encoder_config, parts.weighting_config,
                           **{k: v.state_dict() for k, v in states.items()}, **asdict(progress), rng=rng,
                           world_size=ctx.world_size, seed=self.seed, final=final, config=parts.config)
            except OSError as err:  # disk full, quota, read-only: the previous file is intact
                kept = f"{path} still holds the previous one" if path.exists() else "none was written yet"
                raise write_error(err, f"cannot write the step-{progress.step} checkpoint {path} ({kept})") from err
        if ctx.distributed:
            dist.barrier()
        return path

    def _resume_path(self, ckpt_dir: Path) -> Optional[Path]:
        if self.resume == "auto":
            return ckpt_dir / "last.pt" if (ckpt_dir / "last.pt").is_file() else None
        if self.resume is not None and not Path(self.resume).is_file():
            raise FileNotFoundError(f"trainer.resume: checkpoint not found: {self.resume}")
        return None if self.resume is None else Path(self.resume)

    def _restore(self, path: Path, parts: Components, model: nn.Module, states: dict, ctx: DistContext) -> Progress:
        ckpt = read_checkpoint(path)
        if ckpt.get("format") != FORMAT or "optimizer" not in ckpt:
            raise ValueError(f"{path} is not a taco-plus training checkpoint (use trainer.init_from for weights only)")
        if ckpt["model_config"] != parts.model_config:
            raise ValueError(f"cannot resume from {path}: it was trained with model config {ckpt['model_config']}, "
                             f"this run builds {parts.model_config}")
        if parts.config is not None:
            parts.config["resume_changes"] = resume_changes(ckpt.get("config"), parts.config, int(ckpt["step"]),
                                                            self.allow_resume_changes, path)
        model.load_state_dict(ckpt["state_dict"])
        for name, state in states.items():
            state.load_state_dict(ckpt[name])
        if len(ckpt["rng"]) == ctx.world_size:
            restore_rng(ckpt["rng"][ctx.rank])
        else:  # a different number of processes: data order holds, noise streams restart
            logger.warning("resuming %d-process state with %d processes: RNG streams reseeded", len(ckpt["rng"]),
                           ctx.world_size)
            torch.manual_seed(self.seed + ctx.rank + int(ckpt["step"]))
        logger.info("resumed from %s at step %d (epoch %d)", path, ckpt["step"], ckpt["epoch"])
        return Progress(**{k: int(ckpt[k]) for k in asdict(Progress())})
