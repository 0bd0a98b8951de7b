"""newslora: LoRA fine-tuning of text encoders for news topic classification, on a parameter
budget."""

import sys

__version__ = "0.1.0"


class NewsloraError(Exception):
    """A problem with the user's input (file, config, model path). The CLI prints it on one line."""


class Interrupted(NewsloraError):
    """A signal stopped a command at a point it can continue from: exit 128 + the signal's
    number, as a shell reports a process the signal killed (130 for Ctrl-C)."""

    def __init__(self, message, status=130):
        super().__init__(message)
        self.status = status


def warn(message):
    """A problem the command works around (it goes on): one line on stderr."""
    print(f"newslora: warning: {message}", file=sys.stderr)
