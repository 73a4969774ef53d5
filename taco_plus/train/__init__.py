"""Training (docs/training.md): ``python -m taco_plus.train [overrides]``, or :func:`train` on a
composed config; :class:`Trainer` is the loop of the ``trainer`` config group."""

from taco_plus.train.run import build_components, train
from taco_plus.train.trainer import Components, NonFiniteLossError, Trainer, TrainResult

__all__ = ["Components", "NonFiniteLossError", "TrainResult", "Trainer", "build_components", "train"]
