"""anyfeedback: train policies from whatever feedback you have.

Lean on import: only the standard library here. Submodules import torch/numpy; transformers,
dm_control and matplotlib load only inside the modules that need them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
