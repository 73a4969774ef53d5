"""taco-plus: text-guided neural image compression (TACO, ICML 2024) and its ablations."""

__version__ = "0.1.0"
