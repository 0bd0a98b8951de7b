"""Peak memory of `newslora predict` as the input grows: does it stay bounded?

The model is a 2-layer, 32-wide random BERT with MiniLM's real tokenizer, trained 2 steps:
what grows with the rows is the tokenized input, not the model, and a tiny model predicts
hundreds of thousands of rows in seconds. The input repeats the AG News pool's texts
(title + description) up to each row count. Each count runs `newslora predict` in its own
process; its peak resident memory is that process's (ru_maxrss of a wrapper's children).

  python benchmarks/predict_memory.py [--rows 50000 200000 400000] [--label NAME]

`--label` names the code measured (e.g. a commit, with PYTHONPATH=/path/to/its/src).
Writes results/predict_memory.json (a rerun replaces the rows of its label) and the Markdown
table beside it.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import DATA, ENCODERS, REPO, RESULTS, load_rows, table, write_text
from speed_machine import bf16_units, cpu_name

from newslora.files import write_json
from newslora.model import resolve_name

RESULT = RESULTS / "predict_memory.json"
PEAK = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
PEAK += "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def tiny_run(folder):
    """A run of a tiny random BERT (MiniLM's tokenizer), trained for 2 steps."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    encoder = folder / "encoder"
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(resolve_name(ENCODERS["minilm"])).save_pretrained(encoder)
    overrides = [
        f"model.name={encoder}",
        f"train.output_dir={folder / 'run'}",
        "train.max_steps=2",
        "data.max_train_rows=2000",
        "data.val_rows=200",
        "data.test=",
        "data.predict=",
        "train.precision=fp32",
    ]
    subprocess.run(
        [sys.executable, "-m", "newslora", "train", REPO / "configs" / "demo.toml", *overrides],
        check=True,
        capture_output=True,
    )
    return folder / "run"


def measure(run, rows, folder):
    pool = pd.read_csv(DATA / "agnews" / "train_pool.csv", keep_default_na=False)
    texts = (pool["title"] + " " + pool["description"]).tolist()
    path = folder / f"texts_{rows}.csv"
    pd.DataFrame({"text": (texts * (rows // len(texts) + 1))[:rows]}).to_csv(path, index=False)
    cmd = [sys.executable, "-m", "newslora", "predict", run, path, folder / "out.csv"]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *map(str, cmd)], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    peak_mb = int(done.stdout.split()[-1]) / 1024
    return {"rows": rows, "peak_mb": round(peak_mb), "wall_s": round(wall, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000, 400_000])
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    device = f"cpu ({cpu_name()}, {bf16_units()})"
    with tempfile.TemporaryDirectory() as tmp:
        run = tiny_run(Path(tmp))
        rows = [
            measure(run, n, Path(tmp)) | {"code": args.label, "device": device} for n in args.rows
        ]
    rows = [r for r in load_rows(RESULT) if r["code"] != args.label] + rows
    write_json(RESULT, rows)
    header = ["code", "device", "rows", "peak MB", "wall s"]
    cells = [
        [r["code"], r["device"], f"{r['rows']:,}", f"{r['peak_mb']:,}", r["wall_s"]] for r in rows
    ]
    intro = __doc__.split("\n\n")[1].replace("\n", " ")
    write_text(
        RESULT.with_suffix(".md"),
        "\n".join(
            ["# Peak memory of predict by input size", "", intro, "", *table(header, cells), ""]
        ),
    )
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
