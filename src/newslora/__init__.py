"""newslora: LoRA fine-tuning of text encoders for news topic classification, on a parameter
budget."""

__version__ = "0.1.0"


class NewsloraError(Exception):
    """A problem with the user's input (file, config, model path). The CLI prints it on one line."""
