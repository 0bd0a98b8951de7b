"""Inference paths of a real MiniLM-L6 LoRA run on this CPU: rows/s and label agreement with
the PyTorch fp32 path, on the full official test split (7,600 rows), one after the other in one
process: PyTorch fp32, PyTorch bf16 autocast (what `newslora predict` uses on bf16 CPUs),
ONNX Runtime fp32 and int8 (`newslora export --format onnx --quantize int8`).

    flock /tmp/cpu.lock python benchmarks/export.py [--run RUN_DIR]

RUN_DIR defaults to runs/demo when it has adapter/; else runs/export-bench, trained first if
missing (`newslora train configs/demo.toml data.max_train_rows=3000
train.output_dir=runs/export-bench`). Writes results/export.json and results/export.md.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from common import DATA, REPO, RESULTS, RUNS, newslora, table, write_text

from newslora.data import load_with_config
from newslora.export import ONNX_FILE, ONNX_INT8_FILE, export_run
from newslora.files import write_json
from newslora.model import cpu_supports_bf16
from newslora.predict import load_run, onnx_logits, onnx_session, predict_logits

OUT = RESULTS / "export.json"
BENCH_RUN = REPO / "runs" / "export-bench"


def pick_run(arg):
    if arg:
        return Path(arg).resolve()
    if (REPO / "runs" / "demo" / "adapter").is_dir():
        return REPO / "runs" / "demo"
    if not (BENCH_RUN / "adapter").is_dir():
        newslora(
            "train",
            REPO / "configs" / "demo.toml",
            "data.max_train_rows=3000",
            f"train.output_dir={BENCH_RUN}",
        )
    return BENCH_RUN


def timed(logits_of, texts):
    logits_of(texts[:64])  # warm-up: first-call allocations and kernel choice
    start = time.perf_counter()
    logits = logits_of(texts)
    return logits, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run directory (default: runs/demo or runs/export-bench)")
    run = pick_run(parser.parse_args().run)
    cfg, model, tokenizer = load_run(run)
    model = model.float()
    test = load_with_config(cfg.data, DATA / "agnews" / "test.csv", need_labels=True)
    texts, gold = test["text"].tolist(), test["label"].to_numpy()
    batch, length = cfg.train.eval_batch_size, cfg.model.max_length

    start = time.perf_counter()
    folder = RUNS / "export" / "onnx"
    export_run(run, folder, "onnx", quantize="int8")  # writes model.onnx and the int8 model
    export_s = time.perf_counter() - start

    def torch_path(precision):
        return lambda t: predict_logits(model, tokenizer, t, batch, length, precision, False)

    def onnx_path(name):
        session = onnx_session(folder / name)
        return lambda t: onnx_logits(session, tokenizer, t, batch, length, progress=False)

    paths = {
        "torch fp32": torch_path("fp32"),
        "torch bf16 autocast": torch_path("bf16"),
        "onnx fp32": onnx_path(ONNX_FILE),
        "onnx int8": onnx_path(ONNX_INT8_FILE),
    }
    rows, reference = [], None
    for name, logits_of in paths.items():
        logits, seconds = timed(logits_of, texts)
        labels = logits.argmax(axis=1)
        reference = labels if reference is None else reference
        rows.append(
            {
                "path": name,
                "rows_per_s": round(len(texts) / seconds, 1),
                "agreement_pct": round(100 * float(np.mean(labels == reference)), 2),
                "accuracy_pct": round(100 * float(np.mean(labels == gold)), 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    summary = json.loads((run / "train_summary.json").read_text())
    result = {
        "run": str(run.relative_to(REPO) if run.is_relative_to(REPO) else run),
        "model": cfg.model.name,
        "run_train_rows": summary["train_rows"],
        "run_val_accuracy": summary["val_accuracy"],
        "run_trained_in": summary["precision"],
        "rows": len(texts),
        "batch_size": batch,
        "max_length": length,
        "torch_threads": torch.get_num_threads(),
        "cpu": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"bf16 units: {cpu_supports_bf16()}",
        "export_s": round(export_s, 1),
        "file_mb": {
            name: round((folder / name).stat().st_size / 1e6, 1)
            for name in (ONNX_FILE, ONNX_INT8_FILE)
        },
        "paths": rows,
    }
    write_json(OUT, result)
    write_text(OUT.with_suffix(".md"), markdown(result))


def markdown(result):
    lines = table(
        ["path", "rows/s", "labels agree with torch fp32 %", "test accuracy %"],
        [
            [r["path"], r["rows_per_s"], r["agreement_pct"], r["accuracy_pct"]]
            for r in result["paths"]
        ],
    )
    sizes = ", ".join(f"{k} {v} MB" for k, v in result["file_mb"].items())
    return (
        f"Run `{result['run']}` ({result['model']}, {result['run_train_rows']:,} training rows, "
        f"validation accuracy {100 * result['run_val_accuracy']:.2f}%, trained in "
        f"{result['run_trained_in']}), official AG News test split "
        f"({result['rows']:,} rows), batch {result['batch_size']}, max length "
        f"{result['max_length']}; {result['cpu']}. Command: "
        "`flock /tmp/cpu.lock python benchmarks/export.py`.\n\n"
        + "\n".join(lines)
        + f"\n\nONNX files: {sizes}; export + quantisation took {result['export_s']} s.\n"
    )


if __name__ == "__main__":
    main()
