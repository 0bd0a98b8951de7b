"""Host-side cost of one training batch: fetching its rows and padding them, per batch size.

    python benchmarks/collate.py            # ~1 min, one core

On a GPU the Trainer's data loader runs in the training process between steps (no loader
workers before 2026-12-04), so whatever a batch costs on the host is added to every step.
transformers' DataCollatorWithPadding (`tokenizer.pad`) took ~40 ms for a batch of 1,024 here,
against a whole step of ~145 ms measured on an H200 at that batch (results/speed.md);
PadCollator below, numpy padding, gives the same tensors (tests/test_speed_bench.py).
Both are timed here, taking turns, on the rows `newslora train` feeds them: the pool tokenized
by newslora.train.tokenize, batches drawn as the DataLoader draws them
(`Dataset.__getitems__`). Results: results/collate.json and collate.md.
"""

import argparse
import statistics
import sys
import time

import numpy as np
import pandas as pd
import torch
from common import DATA, ENCODERS, RESULTS, write_text
from speed_machine import device_label
from transformers import DataCollatorWithPadding

from newslora.data import clean_text
from newslora.files import write_json
from newslora.model import load_tokenizer
from newslora.train import tokenize


def pad_rows(tokenizer, rows, multiple=None):
    """Rows of a tokenizer's output (dicts of token lists) -> a dict of numpy arrays: token
    fields padded to the longest row (rounded up to `multiple`) on the tokenizer's padding side,
    other fields (labels, teacher logits) stacked. `tokenizer.pad` gives the same arrays but
    took 40 ms for a batch of 1,024 on one core where this takes 2.8 (results/collate.md).
    Benchmark code: training and prediction keep transformers' padding until a GPU run shows
    this wins end to end (the `numpy-collator` lever; on CPU it made no difference)."""
    fill = {
        "input_ids": tokenizer.pad_token_id,
        "attention_mask": 0,
        "token_type_ids": tokenizer.pad_token_type_id,
        "special_tokens_mask": 1,
    }
    if fill["input_ids"] is None:
        raise ValueError(
            f"tokenizer '{tokenizer.name_or_path}' has no padding token: rows of different "
            "lengths cannot share a batch (a decoder's tokenizer? use an encoder model)"
        )
    width = max(len(row["input_ids"]) for row in rows)
    width = -(-width // multiple) * multiple if multiple else width
    left = tokenizer.padding_side == "left"
    batch = {}
    for key in rows[0]:
        if key not in fill:  # one value per row ("label" is renamed as the Trainer expects)
            values = np.array([row[key] for row in rows])
            batch["labels" if key == "label" else key] = (
                values.astype(np.float32) if values.dtype == np.float64 else values
            )
            continue
        padded = np.full((len(rows), width), fill[key], dtype=np.int64)
        for i, row in enumerate(rows):
            seq = row[key]
            padded[i, slice(width - len(seq), None) if left else slice(len(seq))] = seq
        batch[key] = padded
    return batch


class PadCollator:
    """The Trainer's collator: `pad_rows` as torch tensors (DataCollatorWithPadding's output)."""

    def __init__(self, tokenizer, pad_to_multiple_of=None):
        self.tokenizer, self.multiple = tokenizer, pad_to_multiple_of

    def __call__(self, rows):
        batch = pad_rows(self.tokenizer, rows, self.multiple)
        return {key: torch.from_numpy(values) for key, values in batch.items()}


def pass_ms(fn, batches):
    """Mean milliseconds per batch of one pass over `batches`."""
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return (time.perf_counter() - start) / len(batches) * 1e3


def interleaved_ms(named, repeats):
    """{name: median ms per batch} of `named` {name: (fn, batches)}, taking turns each repeat,
    so a machine that drifts during the run weighs on all of them alike."""
    times = {name: [] for name in named}
    for _ in range(repeats):
        for name, (fn, batches) in named.items():
            times[name].append(pass_ms(fn, batches))
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def measure(encoder, rows, sizes, repeats):
    pool = pd.read_csv(DATA / "agnews" / "train_pool.csv", nrows=rows, dtype=str)
    text = (pool["title"] + " " + pool["description"]).map(clean_text)
    tokenizer = load_tokenizer(ENCODERS[encoder])
    frame = pd.DataFrame({"text": text, "label": pool["label"].astype(int)})
    data = tokenize(frame, tokenizer, 128).remove_columns("length")  # as the Trainer drops it
    order = np.random.default_rng(0).permutation(len(data)).tolist()
    hf, ours = DataCollatorWithPadding(tokenizer), PadCollator(tokenizer)
    out = []
    for size in sizes:
        index_batches = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
        row_batches = [data.__getitems__(idx) for idx in index_batches]
        named = {
            "fetch_ms": (data.__getitems__, index_batches),
            "hf_collator_ms": (hf, row_batches),
            "pad_collator_ms": (ours, row_batches),
        }
        times = interleaved_ms(named, repeats)
        out.append({"encoder": encoder, "batch_size": size, "batches": len(row_batches), **times})
        out[-1]["speedup"] = round(out[-1]["hf_collator_ms"] / out[-1]["pad_collator_ms"], 1)
        print(out[-1], flush=True)
    return out


def table(result):
    lines = [
        "# Host cost of a training batch (`python benchmarks/collate.py`)",
        "",
        f"{result['device']}, {result['measured_at']}, {result['rows']:,} pool rows, median of"
        f" {result['repeats']} passes taking turns. fetch: `Dataset.__getitems__` (the"
        " DataLoader's call); the collators pad the fetched rows.",
        "",
        "| encoder | batch | fetch ms | DataCollatorWithPadding ms | PadCollator ms | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows_by_batch"]:
        lines.append(
            f"| {r['encoder']} | {r['batch_size']:,} | {r['fetch_ms']} | {r['hf_collator_ms']} "
            f"| {r['pad_collator_ms']} | {r['speedup']}x |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["minilm"], choices=sorted(ENCODERS))
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--batch-sizes", default="32,64,256,1024")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the data loader's share of the host: one core
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    result = {
        "device": device_label(False),
        "rows": args.rows,
        "repeats": args.repeats,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["python", "benchmarks/collate.py", *sys.argv[1:]]),
        "rows_by_batch": [
            r for e in args.encoders for r in measure(e, args.rows, sizes, args.repeats)
        ],
    }
    write_json(RESULTS / "collate.json", result)
    write_text(RESULTS / "collate.md", table(result))


if __name__ == "__main__":
    main()
