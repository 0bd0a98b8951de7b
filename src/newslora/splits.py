"""Splits: the validation split of the training file, then the training rows (the rest plus
each `data.mix` file) with duplicates and copies of validation or test texts dropped."""

import re

import pandas as pd
from sklearn.model_selection import train_test_split

from newslora import NewsloraError, warn
from newslora.data import load_with_config

# --- the validation split ----------------------------------------------------------------------


def split_train_val(df, data_cfg):
    """Optional stratified subset, then a stratified, seeded validation split."""
    _warn_absent_classes(df, data_cfg)
    if 0 < data_cfg.max_train_rows < len(df):
        what = f"data.max_train_rows = {data_cfg.max_train_rows}"
        df, _ = _stratified_split(df, len(df) - data_cfg.max_train_rows, data_cfg, what, say=False)
    key = "val_rows" if data_cfg.val_rows > 0 else "val_fraction"
    size = getattr(data_cfg, key)
    train, val = _stratified_split(df, size, data_cfg, f"data.{key} = {size}")
    return train.reset_index(drop=True), val.reset_index(drop=True)


def _stratified_split(df, held, data_cfg, what, say=True):
    """(kept, held out), stratified by label. A class with one row cannot be stratified: its row
    stays on the kept side (training), with a warning if `say`, rather than stopping the run."""
    single = df["label"].map(df["label"].value_counts()) < 2
    if single.all():
        raise NewsloraError(f"{data_cfg.train}: {len(df):,} row(s), none of a class with two")
    if single.any() and say:
        names = [data_cfg.labels[i] for i in sorted(df.loc[single, "label"])]
        warn(f"{data_cfg.train}: one row only for class(es) {names}: kept in training")
    try:
        kept, out = train_test_split(
            df[~single], test_size=held, random_state=data_cfg.seed, stratify=df["label"][~single]
        )
    except ValueError as e:
        raise NewsloraError(
            f"{data_cfg.train}: cannot cut a stratified split of {len(df):,} rows by {what}: {e}"
        ) from None
    return pd.concat([kept, df[single]]), out


def _warn_absent_classes(df, data_cfg):
    absent = [name for i, name in enumerate(data_cfg.labels) if i not in set(df["label"])]
    if absent:
        warn(f"{data_cfg.train}: no rows for class(es) {absent} of data.labels: never trained")


# --- training rows: extra files mixed in, duplicates and leaks dropped ------------------------

_WORDS = re.compile(r"[a-z0-9]+")


def normalise(text):
    """The form compared for duplicates and leaks: lower case, letters and digits only."""
    return " ".join(_WORDS.findall(str(text).lower()))


def held_out_texts(data_cfg):
    """Normalised texts of the test set (data.test), or (None, why) when it cannot be read."""
    try:  # its texts only: a test file in other classes than the run's is still checked
        test = load_with_config(data_cfg, data_cfg.test, need_labels=False, for_prediction=True)
    except NewsloraError as e:
        return None, str(e)
    return set(test["text"].map(normalise)), None


def _weighted(df, weight, seed):
    """weight 2.5 -> every row twice plus a random half; 0.5 -> a random half."""
    whole, fraction = divmod(weight, 1)
    parts = [df] * int(whole)
    if fraction:
        parts.append(df.sample(frac=fraction, random_state=seed))
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]


def _mix_entry(entry):
    if isinstance(entry, str):
        return entry, 1.0
    if isinstance(entry, dict) and "path" in entry:
        weight = float(entry.get("weight", 1.0))
        if weight < 0:
            raise NewsloraError(f"data.mix: weight of {entry['path']} must be >= 0")
        return entry["path"], weight
    raise NewsloraError(f"data.mix: expected a path or {{path = ..., weight = ...}}, got {entry!r}")


class _Guard:
    """Drops rows seen before (duplicates) and rows equal to a validation or test text."""

    def __init__(self, val_df, test_texts):
        self.val = set(val_df["text"].map(normalise))
        self.val_raw = set(val_df["text"])
        self.test = test_texts or set()
        self.seen = set()

    def __call__(self, df):
        norm = df["text"].map(normalise)
        derived = pd.Series(False, index=df.index)
        if "origin" in df:
            derived = df["origin"].isin(self.val_raw)
        counts = {
            "validation_derived": derived,
            "validation_text": norm.isin(self.val) & ~derived,
            "test_text": norm.isin(self.test) & ~norm.isin(self.val) & ~derived,
        }
        leaked = counts["validation_derived"] | counts["validation_text"] | counts["test_text"]
        duplicate = (norm.isin(self.seen) | norm.duplicated()) & ~leaked
        self.seen.update(norm[~leaked])
        dropped = {k: int(v.sum()) for k, v in counts.items()} | {"duplicate": int(duplicate.sum())}
        return df[~(leaked | duplicate)], dropped


def training_rows(train_df, val_df, data_cfg, test_texts=None):
    """The real training split plus each `data.mix` file (sampled by its weight), with no row
    that duplicates an earlier one or whose normalised text is a validation or test text, and
    none derived (`origin`) from a validation row: AG News has duplicate texts, and augmented
    files (synonym copies, cleaned copies) may carry validation rows with or without `origin`.
    Returns the rows and a record of what each source gave and lost."""
    guard = _Guard(val_df, test_texts)
    real, dropped = guard(train_df.assign(source="real"))
    parts = [real]
    record = [{"path": str(data_cfg.train), "rows_in_file": len(train_df), "dropped": dropped}]
    for entry in data_cfg.mix:
        path, weight = _mix_entry(entry)
        df = load_with_config(data_cfg, path)
        if "source" not in df:
            df["source"] = "extra"
        kept, dropped = guard(df)
        added = _weighted(kept, weight, data_cfg.seed)
        parts.append(added)
        record.append(
            {
                "path": str(path),
                "weight": weight,
                "rows_in_file": len(df),
                "dropped": dropped,
                "rows_added": len(added),
            }
        )
    rows = pd.concat(parts, ignore_index=True)[["text", "label", "source"]]
    if rows.empty:
        raise NewsloraError(
            f"{data_cfg.train}: no training rows left after dropping duplicates and rows equal "
            "to validation/test texts (is data.test the training file?)"
        )
    return rows, record
