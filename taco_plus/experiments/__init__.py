"""The ablation study as files: the registered runs (``registry``), the results registry
(``record``), comparisons (``compare``), the report (``report``); docs/experiments.md."""
