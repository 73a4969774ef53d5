"""The paper's generated tables and figures, built from the results registry.

``python -m taco_plus.experiments.report`` (or ``make paper``, which also compiles
``paper/report.tex``) writes ``paper/generated/``; see :mod:`.build` for the files and
their sources.
"""

from taco_plus.experiments.report.build import build_report

__all__ = ["build_report"]
