"""The Hydra config groups of taco-plus (``pkg://taco_plus.configs``); see ``taco_plus.schemas``."""
