"""Parts of the evaluation (:mod:`taco_plus.evaluate`): coding one image under a caption policy, the
entropy coding off the network's path, the resumable output folder, the config schema."""

from taco_plus.evaluation.caption_policy import check_policy, encode_image, finish_image, policy_label
from taco_plus.evaluation.journal import EvaluationJournal, EvaluationMismatchError, progress_bar

__all__ = ["EvaluationJournal", "EvaluationMismatchError", "check_policy", "encode_image", "finish_image",
           "policy_label", "progress_bar"]
