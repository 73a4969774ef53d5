"""Stopping a run on a signal at a step boundary with a checkpoint, then handing the signal to what handled it
before (docs/training.md, "Resuming and fine-tuning": Signals)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn, Optional, Sequence

import torch

logger = logging.getLogger(__name__)


def parse_signals(names: Sequence[str]) -> list[signal.Signals]:
    """``["SIGTERM", "SIGUSR1"]`` -> signals; unknown or uncatchable names raise ``ValueError``."""
    signals = [getattr(signal.Signals, str(name).upper(), None) for name in names]
    for name, sig in zip(names, signals):
        if sig is None or sig.name in ("SIGKILL", "SIGSTOP"):
            raise ValueError(f"trainer.stop_signals: {name!r} is not a signal the trainer can catch")
    return signals


class IgnoreInWorkers:
    """A data-loader ``worker_init_fn``: workers ignore ``signals`` (they end with their loader)."""

    def __init__(self, signals: Sequence[signal.Signals]) -> None:
        self.signals = [int(s) for s in signals]  # plain ints: picklable for spawned workers

    def __call__(self, worker_id: int) -> None:
        for sig in self.signals:
            signal.signal(sig, signal.SIG_IGN)


class TrainingInterrupted(Exception):
    """A stop signal arrived; ``last.pt`` holds the state after ``step``."""

    def __init__(self, signum: int, step: int, checkpoint: Optional[Path]) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint {checkpoint} "
                         "(continue with trainer.resume=auto)")


def exit_by_signal(signum: int) -> NoReturn:
    """Ends the process as the signal's default action would (killed by SIGTERM: 143 in a
    shell, -15 for a Python parent; SIGINT: 130, -2; 128 + signum if that action does not end it)."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    sys.exit(128 + signum)


class StopSignals:
    """Records ``signals`` during training and hands them over at a step boundary."""

    def __init__(self, signals: Sequence[signal.Signals]) -> None:
        self.signals, self.received, self._previous = list(signals), None, {}  # _previous: signal -> handler

    def _record(self, signum: int, frame) -> None:
        if self.received == signum == signal.SIGINT:  # Ctrl-C twice: now
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            if self.signals:
                logger.warning("training outside the main thread: stop signals keep their handlers")
            return self
        for sig in self.signals:
            if (previous := signal.getsignal(sig)) != signal.SIG_IGN:
                self._previous[sig] = previous
                signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def requested(self, distributed: bool, device: torch.device) -> int:
        """The signal to stop for (0 for none), the same on every rank (one tiny all-reduce when distributed)."""
        if not distributed:
            return self.received or 0
        signum = torch.tensor([self.received or 0], dtype=torch.int32, device=device)
        torch.distributed.all_reduce(signum, op=torch.distributed.ReduceOp.MAX)
        return int(signum.item())

    def hand_over(self, signum: int, step: int, checkpoint: Optional[Path]) -> None:
        """Gives the signal to its previous handler once ``checkpoint`` is written: the default action raises
        :class:`TrainingInterrupted`; a Python handler is called (submitit's requeue exits)."""
        self.received, previous = None, self._previous.get(signum)
        if not callable(previous) or previous is signal.default_int_handler:
            raise TrainingInterrupted(signum, step, checkpoint)
        logger.warning("%s: checkpoint of step %d written to %s; calling the previous handler",
                       signal.Signals(signum).name, step, checkpoint)
        previous(signum, None)
