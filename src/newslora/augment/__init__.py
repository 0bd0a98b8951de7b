"""Augment: steps that write a dataset file (CSV or Parquet) a training config can mix in.

Every row carries `source` (real / synonym / generated / pseudo); derived rows also carry
`origin`, the text they were made from, so that training drops those derived from its
validation rows. `data.mix` in a config names the files and their weights.
"""

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from newslora.augment.synonyms import SynonymAugmenter, SynonymConfig
from newslora.data import load_with_config
from newslora.files import atomic_path, not_an_input, write_json
from newslora.tables import write_to

__all__ = [
    "SynonymConfig",
    "clean_file",
    "filter_file",
    "generate_file",
    "synonyms_file",
    "write_table",
]


def write_table(df, path):
    """The table in the format its name says (tables.write_to: CSV, Parquet, ...), atomically."""
    with atomic_path(path) as tmp:
        write_to(df, tmp, path)
    return df


def _table(df, source, origin=None):
    out = pd.DataFrame({"text": df["text"].to_numpy()})
    if "label" in df:
        out["label"] = df["label"].to_numpy()
    out["source"] = source
    if origin is not None:
        out["origin"] = origin
    return out


def _read(data_cfg, spec, allow_pickle=False):
    """The input, labels kept when present: as ids of data.labels, or as the file's own class
    names where it is labelled in others (load_with_config's own_labels), as `train` reads them."""
    df = load_with_config(
        data_cfg, spec, need_labels=False, allow_pickle=allow_pickle, own_labels=True
    )
    if "label" in df and df.attrs["labels"] != list(data_cfg.labels):
        df["label"] = [df.attrs["labels"][i] for i in df["label"]]
    return df


def clean_file(data_cfg, input_spec, output, allow_pickle=False):
    """The input's texts, cleaned (data.clean_text), labels kept when present."""
    not_an_input(output, input_spec)
    df = _read(replace(data_cfg, clean=True), input_spec, allow_pickle)
    return write_table(_table(df, "real"), output)


def synonyms_file(data_cfg, input_spec, output, syn_cfg):
    """`syn_cfg.copies` synonym-augmented copies of every input row (a config.SynonymConfig),
    after the input rows themselves with `syn_cfg.keep_original`."""
    not_an_input(output, input_spec)
    df = _read(data_cfg, input_spec)
    augmenter = SynonymAugmenter(syn_cfg)
    parts = [_table(df, "real")] if syn_cfg.keep_original else []
    for copy in range(syn_cfg.copies):
        texts = [augmenter.augment(t, row, copy) for row, t in enumerate(df["text"])]
        parts.append(_table(df.assign(text=texts), "synonym", origin=df["text"].to_numpy()))
    return write_table(pd.concat(parts, ignore_index=True), output)


def generate_file(cfg, output, work_dir):
    """Adapt (optional), generate, filter (optional); write the kept rows to `output`, and
    beside it every row with its verdict (OUTPUT.scored.csv) and a report (OUTPUT.report.json).

    Returns the report: counts, keep rates per class, speed and example rows."""
    from newslora.augment import generate as gen

    g, labels = cfg.generate, cfg.data.labels
    corpus = None
    if g.corpus and g.adapt_rows > 0:  # read (and check) the corpus before the slow model load
        corpus = load_with_config(cfg.data, g.corpus, need_labels=False)
        corpus = corpus.sample(n=min(g.adapt_rows, len(corpus)), random_state=g.seed)
    model, tokenizer = gen.load_lm(g)
    report = {"model": g.model, "adapted_on": None, "adapt_loss": None}
    if corpus is not None:
        model, report["adapt_loss"] = gen.adapt(
            model, tokenizer, corpus["text"].tolist(), g, work_dir
        )
        report["adapted_on"] = {"corpus": g.corpus, "rows": len(corpus)}
    start = time.perf_counter()
    rows = gen.write_rows(model, tokenizer, labels, g)
    seconds = time.perf_counter() - start
    report |= {
        "generated": len(rows),
        "generate_s": round(seconds, 1),
        "rows_per_s": round(len(rows) / seconds, 2),
    }
    if g.filter_run:
        rows, verdict = _filter(rows, g.filter_run, g.threshold, labels)
        report |= verdict
    else:
        rows["kept"] = True
    return _write_verdict(rows, output, labels, report)


def filter_file(data_cfg, input_spec, output, run_dir, threshold):
    """Keep the rows of a labelled file (generated, or anyone's synthetic data) that a trained
    run assigns to their own label with calibrated confidence >= threshold. Writes like
    generate_file: kept rows, OUTPUT.scored.csv, OUTPUT.report.json; returns the report."""
    not_an_input(output, input_spec)
    df = load_with_config(data_cfg, input_spec, need_labels=True)
    rows = _table(df, df["source"].to_numpy() if "source" in df else "generated")
    rows, verdict = _filter(rows, run_dir, threshold, data_cfg.labels)
    report = {"input": str(input_spec), "rows": len(rows)} | verdict
    return _write_verdict(rows, output, data_cfg.labels, report)


def _filter(rows, run_dir, threshold, labels):
    from newslora.augment.generate import filter_rows, keep_rates

    rows = filter_rows(rows, run_dir, threshold, labels)
    verdict = {"filter_run": str(run_dir), "threshold": threshold}
    return rows, verdict | {"keep_rate": keep_rates(rows, labels)}


def _write_verdict(rows, output, labels, report):
    """Kept rows to `output`; every row with its verdict beside it (for reading, or for use
    unfiltered); the report with 5 kept and 5 rejected rows per class."""
    report = report | {
        "kept": int(rows["kept"].sum()),
        "examples": {
            labels[k]: {
                "kept": group[group["kept"]]["text"].head(5).tolist(),
                "rejected": group[~group["kept"]]["text"].head(5).tolist(),
            }
            for k, group in rows.groupby("label")
        },
    }
    write_table(rows[rows["kept"]][["text", "label", "source"]], output)
    write_table(rows, Path(str(output) + ".scored.csv"))
    write_json(Path(str(output) + ".report.json"), report)
    return report
