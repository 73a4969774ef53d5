"""The ablation study as files: registry of runs, results registry, comparison, report.

| module | what it holds |
|---|---|
| ``registry`` | ``experiments/ablations.yaml`` -> :class:`Ablation` entries and their exact commands |
| ``runner`` | ``run NAME``: prepare -> train per rate point -> evaluate -> record |
| ``store`` | the results registry (``experiments/results``), :class:`MissingResultError` |
| ``record`` | copying a finished evaluation into the registry with its provenance |
| ``compare`` | comparison tables (BD-rate, rate points) and RD figures |
| ``tables`` | a small table type rendered as text, markdown, LaTeX or CSV |
| ``cost``, ``step_time`` | training-step FLOPs and times per profile, GPU-hour estimates |
| ``bench_record``, ``caption_stats``, ``token_weights`` | the registry's measurements |
| ``report`` | ``paper/generated/`` from the registries |

Command line: ``python -m taco_plus.experiments --help``; docs: ``docs/experiments.md``.
"""
