"""The evaluation's config schema; the evaluation itself is :mod:`taco_plus.evaluate`."""
