"""Parts of the evaluation (:mod:`taco_plus.evaluate`): coding one image under a caption policy,
the resumable output folder, the config schema."""

from taco_plus.evaluation.caption_policy import check_policy, code_image, policy_label
from taco_plus.evaluation.journal import EvaluationJournal, EvaluationMismatchError, Progress

__all__ = ["EvaluationJournal", "EvaluationMismatchError", "Progress", "check_policy", "code_image", "policy_label"]
