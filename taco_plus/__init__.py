"""taco-plus: text-guided neural image compression (TACO, ICML 2024) and its ablations."""

__version__ = "0.1.0"

import warnings

# compressai imports torch_geometric, which calls the deprecated torch.jit.script at import time:
# a warning on every command that the user can do nothing about. Only that message is silenced.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
