"""Command-line flags built from the config's fields and from an input file's layout.

Defaults live only in config.py: a flag per config field carries that field's type and help.
"""

import argparse
from dataclasses import fields

from newslora.config import SECTIONS, load_config, set_values


def judge_args(parser, run_help):
    """--run and --threshold: the classifier whose calibrated confidence decides what is kept."""
    parser.add_argument("--run", required=True, help=run_help)
    config_flags(parser, "generate", only=["threshold"])


def config_flags(parser, section, only=None):
    """A flag per field of a config section (`--max-replacements` for synonyms.max_replacements,
    and the field's short `flag` name if it has one), with the field's type, help and default,
    so defaults live only in config.py. A flag not given stays out of `args`: the config
    file's value, else the default, applies (load_with_flags)."""
    for f in fields(SECTIONS[section]):
        if only and f.name not in only:
            continue
        names = dict.fromkeys(n.replace("_", "-") for n in (f.metadata.get("flag"), f.name) if n)
        kind = (
            {"action": argparse.BooleanOptionalAction}
            if f.type is bool
            else {"type": f.type, "metavar": f.type.__name__.upper()}
        )
        parser.add_argument(
            *(f"--{n}" for n in names),
            dest=f"{section}.{f.name}",
            default=argparse.SUPPRESS,
            help=f"{f.metadata['help']} (default: {f.default})".replace("%", "%%"),
            **kind,
        )


def load_with_flags(args):
    """--config (or the config positional) and its overrides, then the flags of config_flags."""
    cfg = load_config(args.config, getattr(args, "overrides", ()))
    for dest, value in vars(args).items():
        if "." in dest:
            section, key = dest.split(".", 1)
            set_values(cfg, section, {key: value})
    return cfg


def backend_arg(parser):
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="torch for a run directory or an hf or adapter export, onnx (ONNX Runtime, CPU) "
        "for an onnx export; auto picks by the folder",
    )


ENCODING_HELP = "text encoding of the input file (default: the run's data.encoding, utf-8)"


def file_args(parser, labelled):
    """The input file's own layout, where it differs from the run's training data."""
    parser.add_argument("--encoding", help=ENCODING_HELP)
    parser.add_argument(
        "--text-columns",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        metavar="COL[,COL]",
        help="columns joined into the text (default: the run's data.text_columns, else `text` "
        "or title + description)",
    )
    if labelled:
        parser.add_argument(
            "--label-column",
            metavar="COL",
            help="column of labels, ids or class names (default: the run's data.label_column, "
            "else `label`, `class` or `Class Index`)",
        )


def file_options(args):
    """What file_args gave: the input file's encoding, text columns and label column."""
    return {k: getattr(args, k) for k in ("encoding", "text_columns", "label_column") if k in args}


PICKLE_HELP = (
    "allow .pkl input (a pickled Hugging Face Dataset, as the competition ships): "
    "unpickling runs code from the file, so only use it on files you trust"
)
