"""Training: ``python -m taco_plus.train [overrides]`` or :func:`train` on a composed config.

* :func:`train` -- build the components of a config and train (``run.py``);
* :class:`Trainer` -- the loop, the ``trainer`` config group (``trainer.py``);
* resumable state, DDP helpers and logs in ``state.py``, ``distributed.py``, ``metrics_log.py``.
"""

from taco_plus.train.run import build_components, train
from taco_plus.train.trainer import Components, NonFiniteLossError, Trainer, TrainResult

__all__ = ["Components", "NonFiniteLossError", "TrainResult", "Trainer", "build_components", "train"]
