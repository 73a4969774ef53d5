"""Hydra entry point: ``python -m taco_plus.train [group=option ...] [key=value ...]``
(``-m`` for an experiment's rate points; ``torchrun --nproc_per_node=K -m taco_plus.train``
for DDP). User errors and stop signals end it with one line (docs/training.md).
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from taco_plus.config import CONFIG_PATH  # importing it registers the schemas
from taco_plus.train.preemption import TrainingInterrupted
from taco_plus.train.run import train


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix (``OSError``: missing files, a full disk)."""
    from taco_plus.data import DatasetPairingError
    from taco_plus.losses import LpipsBackboneUnavailableError
    from taco_plus.text import ClipWeightsUnavailableError
    from taco_plus.train.trainer import NonFiniteLossError

    return (OSError, DatasetPairingError, LpipsBackboneUnavailableError,
            ClipWeightsUnavailableError, NonFiniteLossError)


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = cfg.get("run_dir") or HydraConfig.get().runtime.output_dir
    try:
        result = train(cfg, run_dir)
    except TrainingInterrupted as stop:
        print(f"taco-plus train: {stop}", file=sys.stderr)
        stop.exit()
    except Exception as err:  # a user error, or a component's constructor refusing for one
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if not isinstance(cause, _user_errors()):
            raise
        print(f"taco-plus train: error: {cause}", file=sys.stderr)
        sys.exit(1)
    if result.final_checkpoint is not None:
        print(f"final checkpoint: {result.final_checkpoint}")


if __name__ == "__main__":
    main()
