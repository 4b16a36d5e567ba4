"""nanogpt: train, sample, evaluate and explain GPT-2-style language models.

The public API re-exports the model. Importing nanogpt does no work beyond importing torch.
"""

from nanogpt.errors import NanoGPTError
from nanogpt.model import GPT, GPTConfig, PRESETS

__all__ = ["GPT", "GPTConfig", "PRESETS", "NanoGPTError"]
__version__ = "0.1.0"
