"""Model: any Hugging Face encoder + a classification head + LoRA adapters (peft).

A run directory holds `adapter/` (peft's own format: LoRA weights plus the head, saved through
`modules_to_save`, so reloading gives the same predictions) and the tokenizer. With the default
head, `adapter/` loads with plain `peft.PeftModel.from_pretrained(base_model, run_dir/"adapter")`.
"""

import importlib
import importlib.util
import json
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import safetensors.torch
import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from newslora import NewsloraError, warn
from newslora.lora import check_targets, head_modules, lora_config

# transformers 5 swaps activations for Hub kernels (`kernels` package) when a CUDA model goes to
# eval, downloading them then: offline that fails after training. Opt in with USE_HUB_KERNELS=1.
os.environ.setdefault("USE_HUB_KERNELS", "0")

FULL_WEIGHTS = "model.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # what peft saves
hf_logging.disable_progress_bar()  # weight loading takes a second; no bar needed

# Architecture configs (not weights) of the default Hub models, so that `newslora budget`
# counts parameters exactly when the Hub cannot be reached.
BUNDLED_CONFIGS = {
    "FacebookAI/roberta-base": "roberta-base.json",
    "roberta-base": "roberta-base.json",
}


def cpu_supports_bf16():
    """bf16 matrix instructions (AVX512-BF16 or AMX) make CPU autocast 2-3x faster; without
    them bf16 on CPU is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision):
    """The dtype to autocast to for a `train.precision` setting on this machine (None = fp32)."""
    if precision == "fp32":
        return None
    if torch.cuda.is_available():
        if precision == "fp16" or (precision == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16
    if precision == "fp16":
        raise NewsloraError("train.precision = 'fp16' needs a GPU; use auto, bf16 or fp32")
    if precision == "bf16" or cpu_supports_bf16():
        return torch.bfloat16
    return None


def device_name():
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_gpu_mb():
    """The most GPU memory this process has allocated (MB); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20)


def resolve_name(name):
    """`python:MODULE` -> MODULE.get_model_path() if it has one, else the package's folder
    (for packages that only ship files); anything else unchanged."""
    if not name.startswith("python:"):
        return name
    module = name.removeprefix("python:")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise NewsloraError(f"model '{name}': no installed Python package '{module}'")
    try:
        return str(importlib.import_module(module).get_model_path())
    except (ImportError, AttributeError):  # ships files only (and may not even import)
        return str(Path(spec.origin).parent)


def load_hf_config(name, labels):
    """The encoder's architecture config, with our label names. Falls back to a bundled copy."""
    kwargs = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {n: i for i, n in enumerate(labels)},
    }
    path = resolve_name(name)
    try:
        return AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        if name in BUNDLED_CONFIGS:
            bundled = json.loads(
                (Path(__file__).parent / "model_configs" / BUNDLED_CONFIGS[name]).read_text()
            )
            return AutoConfig.for_model(**{**bundled, **kwargs})
        where = "not a local folder" if not Path(path).exists() else "folder has no usable config"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(
            f"model '{name}': {where}, and not loadable from the Hub ({first})"
        ) from None


def load_tokenizer(name):
    try:
        return AutoTokenizer.from_pretrained(resolve_name(name))
    except (OSError, ValueError) as e:
        raise NewsloraError(f"model '{name}': cannot load its tokenizer ({e})") from None


class LinearHead(nn.Module):
    """One linear layer (hidden*classes + classes parameters) on the first token, or with
    pool="mean" on the mean of the last hidden states over real tokens: the pooling that
    sentence-transformers encoders (all-MiniLM, all-mpnet) were trained with."""

    def __init__(self, hidden, n_labels, dropout=0.1, pool="first"):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, n_labels)
        self.pool, self.mask = pool, None  # mask: set by keep_mask before every forward

    def forward(self, features, **kwargs):
        if self.pool == "mean":
            if features.dim() != 3:
                raise NewsloraError("model.head = 'mean': this model gives its head no sequence")
            mask = self.mask.unsqueeze(-1).to(features.dtype)
            features = (features * mask).sum(1) / mask.sum(1).clamp(min=1)
        elif features.dim() == 3:  # RoBERTa/MPNet-style heads receive the whole sequence
            features = features[:, 0]
        return self.linear(self.dropout(features))


def install_mean_head(model, hidden, n_labels):
    """A mean-pooling LinearHead, fed the attention mask by a hook on the encoder's call."""
    if getattr(model.config, "classifier_pooling", None):  # ModernBERT pools in its forward
        model.config.classifier_pooling = "mean"  # the same masked mean, then straight to
        model.head = nn.Identity()  # the one linear layer: its dense + norm head set aside
        model.classifier = LinearHead(hidden, n_labels)
        return
    model.classifier = LinearHead(hidden, n_labels, pool="mean")
    encoder = getattr(model, model.base_model_prefix)
    for owner in (encoder, model):  # BERT's pooler sits in the encoder, DeBERTa's beside it
        if getattr(owner, "pooler", None) is not None:
            owner.pooler = nn.Identity()  # the head receives the whole sequence and pools it
    if hasattr(encoder, "pooler_activation"):  # ALBERT cuts the first token before its pooler
        encoder.pooler_activation = nn.Identity()
        encoder.register_forward_hook(_sequence_as_pooled)

    def keep_mask(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        # every LinearHead under `classifier`: peft's modules_to_save runs a copy of the head
        for head in model.classifier.modules():
            if isinstance(head, LinearHead):
                head.mask = torch.ones_like(ids) if mask is None else mask

    encoder.register_forward_pre_hook(keep_mask, with_kwargs=True)


def _sequence_as_pooled(_module, _args, output):
    output["pooler_output"] = output["last_hidden_state"]  # what the head reads, in full
    return output


# the encoder's dropout probabilities, by the names transformers' configs give them
# (ModernBERT's: attention_dropout, embedding_dropout, mlp_dropout)
ENCODER_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout",
                    "attention_dropout", "activation_dropout", "embedding_dropout",
                    "mlp_dropout")  # fmt: skip


def set_encoder_dropout(hf_config, p):
    """model.dropout: every encoder dropout the config has -> p. The default head's dropout,
    which BERT and RoBERTa take from hidden_dropout_prob unless classifier_dropout is set,
    stays what it was."""
    if getattr(hf_config, "classifier_dropout", 0) is None:
        hf_config.classifier_dropout = getattr(hf_config, "hidden_dropout_prob", None)
    for name in ENCODER_DROPOUTS:
        value = getattr(hf_config, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(hf_config, name, p)


def attention_kernel(setting, training=True):
    """`model.attention` -> transformers' attn_implementation (None: the library's default).

    `auto`: eager when training on CPU, transformers' default (SDPA) otherwise. On CPU, eager
    trained MiniLM 1.1-1.2x faster than SDPA on short news batches (results/speed.md); for
    inference neither kernel was faster (results/predict_attention.md), so the default stays.
    GPUs keep transformers' choice (not measured)."""
    if setting == "auto":
        return "eager" if training and not torch.cuda.is_available() else None
    return setting


def build_model(cfg, pretrained=True, training=True):
    """Encoder + head + LoRA, from a Config. pretrained=False builds on the meta device (no
    weights, no memory): enough to count parameters exactly. `training`: picks the attention
    kernel (attention_kernel)."""
    hf_config = load_hf_config(cfg.model.name, cfg.data.labels)
    if cfg.model.dropout != "auto":
        set_encoder_dropout(hf_config, cfg.model.dropout)
    torch.manual_seed(cfg.train.seed)  # the head's random init is part of the run's seed
    kernel = attention_kernel(cfg.model.attention, training)
    kwargs = {"attn_implementation": kernel} if kernel else {}
    try:
        if pretrained:
            model = _from_pretrained(resolve_name(cfg.model.name), hf_config, kwargs)
        else:
            with torch.device("meta"):
                model = AutoModelForSequenceClassification.from_config(hf_config, **kwargs)
    except ValueError as e:  # e.g. an architecture without SDPA support
        if not kernel or kernel not in str(e).lower():
            raise
        first = str(e).splitlines()[0]
        raise NewsloraError(f"config: model.attention = '{kernel}': {first}") from None
    if cfg.model.head in ("linear", "mean"):
        if not isinstance(getattr(model, "classifier", None), nn.Module):
            raise NewsloraError(
                f"model.head = '{cfg.model.head}' is not supported for {type(model).__name__}"
            )
        shape = hf_config.hidden_size, len(cfg.data.labels)
        with torch.device("meta" if not pretrained else "cpu"):
            if cfg.model.head == "mean":
                install_mean_head(model, *shape)
            else:
                model.classifier = LinearHead(*shape)
    if cfg.lora.full_finetune:
        return model
    check_targets(model, cfg)
    return get_peft_model(model, lora_config(cfg, model))


def _from_pretrained(path, hf_config, kwargs):
    """The encoder's weights. transformers' load report lists the head as missing every time
    (it is new: it is what trains), or as misshapen where the checkpoint is a classifier of
    other classes (its head is replaced); only a missing or misshapen encoder weight is news."""
    try:
        with errors_only():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path,
                config=hf_config,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
                **kwargs,
            )
    except OSError as e:  # a Hub id offline whose config newslora bundles, a folder without weights
        raise NewsloraError(f"model '{path}': cannot load its weights ({_load_error(e)})") from None
    head = tuple(f"{name}." for name in head_modules(model))
    misshapen = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()]
    missing = [k for k in [*info["missing_keys"], *misshapen] if not k.startswith(head)]
    if missing:
        warn(
            f"{path}: {len(missing)} encoder weight(s) not in the checkpoint, initialised at "
            f"random (first: {missing[0]})"
        )
    return model


def store_frozen(model, dtype, trunk=False):
    """Cast the weights of the linear layers that do not train to `dtype`; returns how many
    modules were cast.

    Under autocast every linear layer's fp32 weight is cast to bf16 in every forward pass, and
    autocast caches that cast only for weights that train, so a frozen base pays it at every
    step. Stored in bf16 it is cast once, with the same outputs. LoRA's A/B and the head train:
    they stay fp32 (the optimizer updates fp32 master weights).

    `trunk` also casts every other frozen module (embeddings, LayerNorms): the hidden states
    then stay bf16 between layers instead of going to fp32 at each residual add and LayerNorm
    and back to bf16 for the next matrix product. Not the same bits: the residual stream is
    rounded to bf16."""
    kinds = nn.Module if trunk else nn.Linear
    frozen = [m for m in model.modules() if isinstance(m, kinds) and _frozen(m)]
    for module in frozen:
        module.to(dtype)
    return len(frozen)


def _frozen(module):
    """Whether the module has weights of its own and none of them trains."""
    own = list(module.parameters(recurse=False))
    return bool(own) and not any(p.requires_grad for p in own)


def save_model(model, tokenizer, folder):
    """peft adapter (+ head) or, for full fine-tuning, every weight; tokenizer beside it."""
    folder = Path(folder)
    if isinstance(model, PeftModel):  # the vocabulary is never resized: no lookup of the base
        model.save_pretrained(folder, save_embedding_layers=False)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_model(model, str(folder / FULL_WEIGHTS))
    tokenizer.save_pretrained(folder)


def warm_start(model, folder):
    """Copy a finished run's LoRA and head weights (its `adapter/`) into `model`, freshly built
    from a config of the same shape (train.init_from). Every trainable weight must come from
    the file and nothing else may be in it: a partial start would be a silent fresh init."""
    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise NewsloraError(f"train.init_from: {path}: missing (a LoRA run's adapter is needed)")
    try:
        result = set_peft_model_state_dict(model, safetensors.torch.load_file(str(path)))
    except RuntimeError as e:  # torch names each tensor whose shape differs
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise NewsloraError(f"train.init_from: {path}: {detail}") from None
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    missing = sorted(set(trainable) & set(result.missing_keys))
    if missing or result.unexpected_keys:
        names = ", ".join((missing or result.unexpected_keys)[:3])
        what = "lacks" if missing else "has weights this model does not:"
        raise NewsloraError(f"train.init_from: {path} {what} {names}")


def load_model(cfg, folder):
    """Rebuild the run's model from its config and saved weights, ready for inference."""
    folder = Path(folder)
    # The base model's head (and a linear head) starts random and transformers reports it as
    # newly initialised; here the saved head and adapters replace it at once, so that report
    # would be noise in predict/evaluate output. Training still shows it (build_model).
    full = cfg.lora.full_finetune
    for name in [FULL_WEIGHTS] if full else [ADAPTER_WEIGHTS, "adapter_config.json"]:
        if not (folder / name).is_file():
            raise NewsloraError(f"{folder / name}: missing, the run is incomplete")
    with errors_only():
        base = build_model(_without_lora(cfg), training=False)
    with saved_files(folder):
        if full:
            safetensors.torch.load_model(base, str(folder / FULL_WEIGHTS))
            model = base
        else:
            with warnings.catch_warnings():  # _check_complete says it, in one line
                warnings.filterwarnings("ignore", message="Found missing adapter keys")
                model = PeftModel.from_pretrained(base, folder)
            _check_complete(model, folder / ADAPTER_WEIGHTS)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model.eval(), tokenizer


def _check_complete(model, path):
    """peft only warns when the file lacks some of the adapter's weights, and those keep their
    fresh init (lora_B zero): predictions from a part of the run. Stop on it instead."""
    with safe_open(str(path), framework="pt") as f:
        saved = set(f.keys())
    # as saved (save_model): "auto" would look the base up, on the Hub for an id
    expected = get_peft_model_state_dict(model, save_embedding_layers=False)
    missing = sorted(set(expected) - saved)
    if missing:
        raise NewsloraError(
            f"{path}: lacks {len(missing)} of the run's weights ({missing[0]}): cut short, or "
            "from another run?"
        )


@contextmanager
def saved_files(folder, extra=()):
    """Around loads of what a run or an export saved: a file cut short or edited, or weights
    swapped in from another run, stops in one line naming the folder. The libraries raise
    their own types for these (`extra`: ONNX Runtime's), each with a readable message."""
    try:
        yield
    except (SafetensorError, ValueError, OSError, RuntimeError, KeyError, *extra) as e:
        raise NewsloraError(f"{folder}: damaged saved files ({_load_error(e)})") from None


def _load_error(e):
    """What a failed load says, in one line."""
    if isinstance(e, KeyError):  # e.g. peft: a weight the model needs is not in the file
        return f"{e.args[0]!r} missing: files of another run?"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # torch's load_state_dict: "Error(s) in loading state_dict ...", then a line per tensor
    picked = lines[1:] if isinstance(e, RuntimeError) and len(lines) > 1 else lines
    return picked[0] if picked else type(e).__name__


def _without_lora(cfg):
    """The same config with full_finetune on: build_model then returns the bare base model."""
    return replace(cfg, lora=replace(cfg.lora, full_finetune=True))


@contextmanager
def errors_only(logger_name="transformers"):
    """Only errors from this Python logger (and from transformers) for the duration of the block."""
    logger, verbosity = logging.getLogger(logger_name), hf_logging.get_verbosity()
    level = logger.level
    logger.setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        logger.setLevel(level)
        hf_logging.set_verbosity(verbosity)
