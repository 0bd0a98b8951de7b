"""newslora: LoRA fine-tuning of text encoders for news topic classification, on a parameter
budget."""

import sys

__version__ = "0.1.0"


class NewsloraError(Exception):
    """A problem with the user's input (file, config, model path). The CLI prints it on one line."""


class Interrupted(NewsloraError):
    """The user stopped a command (Ctrl-C) at a point it can continue from: exit 130."""


def warn(message):
    """A problem the command works around (it goes on): one line on stderr."""
    print(f"newslora: warning: {message}", file=sys.stderr)
