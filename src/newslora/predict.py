"""Predict: a trained run + a file of texts -> `ID,Label` CSV (the Kaggle submission format).

Rows are tokenized once, sorted by token length and batched, so each batch pads only to its own
longest row (news texts are ~50 tokens; padding to 512 would cost ~10x). LoRA is merged into
the base weights for inference. Output order and IDs follow the input file.
"""

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from newslora import NewsloraError, warn
from newslora.config import load_config
from newslora.data import for_file, load_with_config, row_numbers
from newslora.files import atomic_path, not_a_run, not_an_input, read_json
from newslora.model import autocast_dtype, load_model, saved_files, store_frozen
from newslora.tables import write_to


def run_config(run_dir):
    """The resolved config of a finished run (checked before any weights are loaded)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file() or not (run_dir / "adapter").is_dir():
        raise not_a_run(run_dir, "config.toml or adapter/")
    return saved_config(run_dir / "config.toml")


def saved_config(path):
    """A config a run (or its export) saved. Settings added since then take the value that
    run trained with, not today's default."""
    cfg, saved = load_config(path), tomllib.loads(Path(path).read_text())
    if "dropout" not in saved.get("model", {}):
        # saved before model.dropout existed (2026-12-04): it trained with the encoder's own
        cfg.model.dropout = "auto"
    for key in ("bf16_base", "bf16_trunk"):  # saved before these existed: trained without
        if key not in saved.get("train", {}):
            setattr(cfg.train, key, False)
    return cfg


def load_run(run_dir, merge=True):
    """(config, model, tokenizer) of a finished run or of its adapter export; LoRA merged for
    speed unless merge=False."""
    meta = export_meta(run_dir)
    if meta is not None and meta["format"] == "adapter":
        cfg, folder = _adapter_export_config(run_dir), Path(run_dir)
    else:
        cfg, folder = run_config(run_dir), Path(run_dir) / "adapter"
    try:
        model, tokenizer = load_model(cfg, folder)
    except NewsloraError as e:
        if meta is None or not str(e).startswith(f"model '{cfg.model.name}'"):
            raise
        where = f"model.name in {folder / EXPORT_CONFIG}"
        raise NewsloraError(f"{e}; the adapter's base encoder, named by {where}") from None
    if merge and isinstance(model, PeftModel):
        model = model.merge_and_unload()
    return cfg, model.eval(), tokenizer


def _adapter_export_config(folder):
    """An adapter export holds a linear head as the architecture's own `classifier` (export
    checks that it is one Linear there, and renames its weights): build that head."""
    cfg = saved_config(Path(folder) / EXPORT_CONFIG)
    if cfg.model.head == "linear":
        cfg.model.head = "default"
    return cfg


def load_for_predict(run_dir):
    """load_run, then the weights stored as training stored its frozen ones (as_trained)."""
    cfg, model, tokenizer = load_run(run_dir)
    return cfg, as_trained(cfg, model), tokenizer


def as_trained(cfg, model):
    """A merged model (nothing trains) with its weights in bf16 where its run trained them so:
    `train.bf16_base` under bf16 autocast, all of it with `train.bf16_trunk`, else its linear
    layers. autocast would cast fp32 weights again for every batch, and the hidden states
    would go to fp32 and back around every LayerNorm. For prediction only: exports keep fp32."""
    if cfg.train.bf16_base and autocast_dtype(cfg.train.precision) is torch.bfloat16:
        store_frozen(model, torch.bfloat16, trunk=cfg.train.bf16_trunk)
    return model


def predict_logits(
    model, tokenizer, texts, batch_size=64, max_length=128, precision="auto", progress=True
):
    """Logits for `texts`, in input order; length-sorted batches with dynamic padding."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = autocast_dtype(precision)
    model.to(device).eval()  # no dropout at inference
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        for idx, batch in _sorted_batches(tokenizer, texts, batch_size, max_length, "pt", progress):
            logits[idx] = model(**batch.to(device)).logits.float().cpu().numpy()
    return logits


# Rows tokenized at a time. A tokenizer's output holds ~12 KB a row (benchmarks/predict_memory.py:
# 5.5 GB at 400,000 rows tokenized at once): a file of millions would not fit in memory. Sorted
# within 50,000 rows, the batches pad as little as sorted over all of them.
CHUNK_ROWS = 50_000


def _sorted_batches(tokenizer, texts, batch_size, max_length, tensors, progress):
    """(row indices, padded batch), shortest rows first within each chunk of CHUNK_ROWS rows:
    each batch pads to its own longest."""
    texts = list(texts)
    chunks = range(0, len(texts), CHUNK_ROWS)
    total = sum(-(-min(CHUNK_ROWS, len(texts) - first) // batch_size) for first in chunks)
    with tqdm(total=total, desc="predict", disable=not progress, unit="batch") as bar:
        for first in chunks:
            enc = tokenizer(
                texts[first : first + CHUNK_ROWS], truncation=True, max_length=max_length
            )
            order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = tokenizer.pad(
                    {k: [enc[k][i] for i in idx] for k in enc}, return_tensors=tensors
                )
                yield first + idx, batch
                bar.update()


def label_confidence(logits, temperature=1.0):
    """(predicted label, its softmax probability at `temperature`) for each row of logits."""
    scaled = torch.as_tensor(logits, dtype=torch.float32) / temperature
    probs = torch.softmax(scaled, dim=-1).numpy()
    return probs.argmax(axis=1), probs.max(axis=1)


def fit_temperature(logits, labels):
    """Temperature scaling (Guo et al., 2017): the T minimising validation NLL of softmax(z/T).

    A LoRA model trained briefly on little data is under-confident (the 2,000-row run of
    benchmarks/augment.py never gave a raw top probability above 0.87); after scaling,
    "confidence >= 0.9" means about what it says, so the filter and pseudo-labelling
    thresholds carry over across runs.
    Accuracy is unchanged: T > 0 keeps every argmax."""
    z = torch.tensor(np.asarray(logits), dtype=torch.float32)  # a copy: the Trainer's arrays
    y = torch.tensor(np.asarray(labels), dtype=torch.long)  # are read-only
    grid = torch.logspace(-2, 1, 301)  # T from 0.01 to 10; NLL is smooth in log T
    nll = torch.stack([torch.nn.functional.cross_entropy(z / t, y) for t in grid])
    return round(float(grid[int(nll.argmin())]), 4)


def run_confidence(run_dir, texts, labels=None):
    """(predicted label, calibrated confidence) of a run for each text. `labels`, where given,
    must be the run's classes in its order: the caller compares label ids with the run's."""
    own = run_config(run_dir).data.labels
    if labels is not None and list(labels) != list(own):
        raise NewsloraError(
            f"{run_dir}: its classes {own} are not data.labels {list(labels)}: "
            "label ids would be compared across different classes"
        )
    cfg, model, tokenizer = load_for_predict(run_dir)
    logits = predict_with_config(cfg, model, tokenizer, list(texts))
    return label_confidence(logits, run_temperature(run_dir))


def run_temperature(run_dir):
    """The run's fitted temperature (1.0 for runs saved before calibration existed)."""
    return (read_json(Path(run_dir) / "train_summary.json") or {}).get("temperature", 1.0)


def predict_with_config(cfg, model, tokenizer, texts, batch_size=None):
    """predict_logits with a run's batch size, max length and precision."""
    batch_size = batch_size or cfg.train.eval_batch_size
    return predict_logits(
        model, tokenizer, texts, batch_size, cfg.model.max_length, cfg.train.precision
    )


def warn_bad_ids(ids, spec):
    """The output keys each row by its ID: a missing or repeated one makes it ambiguous (a
    Kaggle submission with one is refused), so name those rows; every row is still predicted."""
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    repeated = ids.duplicated(keep=False) & ~missing
    if missing.any():
        warn(f"{spec}: {int(missing.sum())} row(s) with no ID (rows {row_numbers(missing)})")
    if repeated.any():
        warn(f"{spec}: {int(repeated.sum())} row(s) share an ID (rows {row_numbers(repeated)})")


def predict_run(
    run_dir,
    input_spec,
    output,
    allow_pickle=False,
    batch_size=None,
    backend="auto",
    encoding=None,
    text_columns=None,
    names=False,
):
    """Write `ID,Label` for each row of `input_spec` to `output`, atomically; return the table.
    Labels are ids (what a Kaggle submission takes), or with `names` the run's class names.

    Every input row gets a prediction (an empty text too: a submission needs one row per input);
    labels in the input, such as -1 placeholders, are ignored. `run_dir` may also be an `hf` or
    `adapter` or `onnx` export folder (see load_predictor)."""
    cfg = source_config(run_dir)  # the input is read and checked before the model loads
    folder_kind(run_dir, backend)
    data_cfg = for_file(cfg.data, encoding=encoding, text_columns=text_columns)
    spec = input_spec or cfg.data.predict
    df = load_with_config(data_cfg, spec, allow_pickle=allow_pickle, for_prediction=True)
    if df.attrs["id_column"] is not None:
        warn_bad_ids(df["id"], spec)
    not_an_input(output, spec)
    with atomic_path(output) as tmp:  # before the model runs: an unwritable place fails at once
        _, logits_of = load_predictor(run_dir, backend)
        predicted = logits_of(df["text"].tolist(), batch_size).argmax(axis=1)
        if names:
            predicted = np.asarray(cfg.data.labels, dtype=object)[predicted]
        table = pd.DataFrame({"ID": df["id"], "Label": predicted})
        write_to(table, tmp, output)
    table.attrs["id_column"] = df.attrs["id_column"]
    return table


# --- export folders (`newslora export`) and the ONNX Runtime backend ---------------------------

EXPORT_META = "newslora_export.json"  # written by `newslora export`: format, labels, files
EXPORT_CONFIG = "newslora.toml"  # the run's resolved config, copied into each export
BACKENDS = {"run": "torch", "hf": "torch", "adapter": "torch", "onnx": "onnx"}  # folder kinds


def export_meta(path):
    """The metadata of a `newslora export` folder; None for anything else."""
    return read_json(Path(path) / EXPORT_META)


def source_config(path):
    """The resolved config of a run directory or of an export folder."""
    if export_meta(path) is not None:
        return saved_config(Path(path) / EXPORT_CONFIG)
    return run_config(path)


def folder_kind(path, backend="auto"):
    """What a folder is (run, hf or onnx export), checked against the backend asked for."""
    meta = export_meta(path)
    kind = meta["format"] if meta else "run"
    if kind not in BACKENDS:
        raise NewsloraError(f"{path}: {EXPORT_META} names an unknown format '{kind}'")
    if backend not in ("auto", BACKENDS[kind]):
        hint = (
            f"export it first: newslora export {path} OUT --format onnx"
            if backend == "onnx"
            else "an onnx export runs on ONNX Runtime; use its run or an hf export for torch"
        )
        raise NewsloraError(f"{path}: --backend {backend} does not fit this folder ({hint})")
    return kind


def load_predictor(path, backend="auto"):
    """(config, logits_of(texts, batch_size=None, progress=True)) for a run directory or an
    `hf` or `adapter` export (PyTorch, with the run's precision; an adapter export loads its
    base encoder by the run's model.name) or an `onnx` export (ONNX Runtime, CPU)."""
    path = Path(path)
    kind = folder_kind(path, backend)
    cfg = source_config(path)
    size, length = cfg.train.eval_batch_size, cfg.model.max_length
    if kind == "onnx":
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf

        with saved_files(path, extra=(Fail, InvalidProtobuf)):
            session = onnx_session(path / export_meta(path)["onnx_file"])
            tokenizer = AutoTokenizer.from_pretrained(path)

        def onnx_of(texts, batch_size=None, progress=True):
            return onnx_logits(session, tokenizer, texts, batch_size or size, length, progress)

        return cfg, onnx_of
    if kind == "hf":
        with saved_files(path):
            model = AutoModelForSequenceClassification.from_pretrained(path).eval()
            tokenizer = AutoTokenizer.from_pretrained(path)
        model = as_trained(cfg, model.requires_grad_(False))
    else:
        cfg, model, tokenizer = load_for_predict(path)

    def torch_of(texts, batch_size=None, progress=True):
        size_ = batch_size or size
        return predict_logits(
            model, tokenizer, texts, size_, length, cfg.train.precision, progress=progress
        )

    return cfg, torch_of


def onnx_session(path):
    """An ONNX Runtime session on the CPU (all physical cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on unused initialisers are noise
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, tokenizer, texts, batch_size=64, max_length=128, progress=True):
    """predict_logits for an ONNX Runtime session: same tokenization, batches and row order."""
    names = [i.name for i in session.get_inputs()]
    logits = np.zeros((len(texts), session.get_outputs()[0].shape[-1]), dtype=np.float32)
    for idx, batch in _sorted_batches(tokenizer, texts, batch_size, max_length, "np", progress):
        logits[idx] = session.run(None, {n: batch[n].astype(np.int64) for n in names})[0]
    return logits
