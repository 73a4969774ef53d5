"""The ablation study as files: the registered runs, the results registry, comparisons, the report.

| module | what it holds |
|---|---|
| ``registry`` | the runs (``taco_plus/configs/experiment/*.yaml``), their commands, ``run NAME`` |
| ``record`` | the results registry (``experiments/results``): recording an evaluation, reading it back |
| ``compare`` | comparison tables (BD-rate, rate points) with pandas |
| ``report`` | ``paper/generated/`` from the two registries |

Command line: ``python -m taco_plus.experiments --help``; docs: ``docs/experiments.md``.
"""
