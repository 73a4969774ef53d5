"""Hydra entry point ``python -m taco_plus.train [group=option ...] [key=value ...]`` (``-m``, torchrun); user
errors (exit status 2) and stop signals end it with one line (docs/training.md)."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from taco_plus.schemas import CONFIG_PATH  # importing it installs the schemas and resolvers
from taco_plus.train.preemption import TrainingInterrupted, exit_by_signal
from taco_plus.train.run import train


def one_line(err: BaseException) -> str:  # a data-loader worker's error quotes a traceback: its last line
    text = str(err).strip()
    return text.splitlines()[-1].partition(": ")[2] or text if "DataLoader worker" in text else text


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = cfg.get("run_dir") or HydraConfig.get().runtime.output_dir
    try:
        result = train(cfg, run_dir)
    except TrainingInterrupted as stop:
        print(f"taco-plus train: {stop}", file=sys.stderr)
        exit_by_signal(stop.signum)
    except KeyboardInterrupt:  # a second Ctrl-C before the step boundary, or one before training
        print("taco-plus train: interrupted: stopped at once, without a new checkpoint "
              "(trainer.resume=auto continues from the last one)", file=sys.stderr)
        exit_by_signal(2)
    except Exception as err:  # a user error, or a component's constructor refusing for one
        from taco_plus.losses import LpipsBackboneUnavailableError
        from taco_plus.text import ClipWeightsUnavailableError
        from taco_plus.train.trainer import NonFiniteLossError

        # OSError: missing files, a full disk; ValueError: every bad-input error of the package
        user = OSError, ValueError, LpipsBackboneUnavailableError, ClipWeightsUnavailableError, NonFiniteLossError
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if not isinstance(cause, user):
            raise
        print(f"taco-plus train: error: {one_line(cause)}", file=sys.stderr)
        sys.exit(2)
    if result.final_checkpoint is not None:
        print(f"final checkpoint: {result.final_checkpoint}")


if __name__ == "__main__":
    main()
