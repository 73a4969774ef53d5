"""Parts of the evaluation (:mod:`taco_plus.evaluate`): caption policies and the
resumable output folder."""

from taco_plus.evaluation.caption_policy import CAPTION_POLICIES, code_image, policy_label
from taco_plus.evaluation.journal import EvaluationJournal, EvaluationMismatchError, Progress

__all__ = ["CAPTION_POLICIES", "EvaluationJournal", "EvaluationMismatchError", "Progress", "code_image", "policy_label"]
