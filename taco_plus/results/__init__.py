"""Results files and what is made from them.

| module | what |
|---|---|
| ``format`` | CompressAI-format RD JSON (``load_results``, ``save_results``, ``curve``, ``merge_results``) and the shipped reference curves |
| ``per_image`` | the per-image CSV and its summary into one rate point |
| ``bdrate`` | Bjøntegaard delta rate |
| ``plot`` | the RD plot (``plot_rd``; ``python -m taco_plus.results.plot``) |
| ``sensitivity`` | the caption-sensitivity table |
| ``provenance`` | file hashes, git commit, environment recorded with every result |
"""
