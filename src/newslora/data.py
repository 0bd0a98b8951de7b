"""Data: any labelled or unlabelled text table in, a DataFrame with `text` (+ `label`, `id`) out.

Accepted sources:
  * the official AG News CSV (no header; class 1-4, title, description);
  * a CSV with a header (`label,title,description`, `label,text`, `text`, ...);
  * Parquet, JSON lines (.jsonl / .json);
  * a pickled Hugging Face Dataset (.pkl), only with allow_pickle (unpickling runs code);
  * a Hub dataset id, `owner/name[:split]`, loaded with `datasets` (needs the network or cache).
Text is title + " " + description (or `text`), optionally cleaned of AG's escapes.
"""

import csv
import html
import pickle
import re
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from newslora import NewsloraError

LABEL_COLUMNS = ("label", "class", "Class Index", "labels", "category")
ONE_BASED_LABEL_COLUMNS = ("class", "Class Index")  # AG News' original CSV and Kaggle's copy
TEXT_PARTS = ("title", "description")
PASSED_THROUGH = ("source", "origin")  # written by `newslora augment`


# --- cleaning ---------------------------------------------------------------------------------

# AG News lost the "&" of its HTML entities to a space: "Bush&#39;s" became "Bush #39;s" and
# "&quot;" became " quot;". Putting the "&" back in place of that space restores the entity.
_NUMERIC_ESCAPE = re.compile(r"(?: |(?<![&\w]))#(\d{2,4});")
_NAMED_ESCAPE = re.compile(r"(?: |(?<![&\w]))(quot|amp|lt|gt|nbsp|apos);")
_TAGS = re.compile(r"<[^>]{1,200}>")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,;:])(?=\s|$)")


def clean_text(text):
    """Undo AG News' mangled HTML: `#39;` -> ', `quot;` -> ", `&lt;b&gt;` tags, `\\$`, `\\`.

    Idempotent: clean_text(clean_text(t)) == clean_text(t).
    """
    text = _NUMERIC_ESCAPE.sub(r"&#\1;", text)
    text = _NAMED_ESCAPE.sub(r"&\1;", text)
    text = html.unescape(html.unescape(text))  # some rows are escaped twice (&amp;lt;)
    text = _TAGS.sub(" ", text)
    text = text.replace("\\$", "$").replace("\\", " ")
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text))  # "Inc. <TXN.N>," -> "Inc.,"
    return text.strip()


# --- reading ----------------------------------------------------------------------------------


FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".json", ".pkl", ".pickle")


def _is_hub_id(spec):
    """`owner/name` or `owner/name:split`; a missing `data/train.csv` is a missing file."""
    if spec.lower().endswith(FILE_SUFFIXES):
        return False
    return re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.\[\]%:-]+)?", spec) is not None


def _read_hub(spec):
    import datasets

    name, _, split = spec.partition(":")
    try:
        return datasets.load_dataset(name, split=split or "train").to_pandas()
    except Exception as e:  # offline, unknown id, unknown split: all end the same way for a user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(
            f"{spec}: not a local file, and the Hub dataset could not be loaded ({first})"
        ) from None


def _headerless_ag(path):
    """The original AG News CSV has no header: its first row starts with a class number."""
    with open(path, newline="", encoding="utf-8") as f:
        first = next(csv.reader(f), [])
    return len(first) == 3 and first[0].strip().isdigit()


def _read_pickle(path, allow_pickle):
    if not allow_pickle:
        raise NewsloraError(
            f"{path}: reading a pickle runs code from the file; pass --allow-pickle if you trust it"
        )
    with open(path, "rb") as f:
        obj = pickle.load(f)
    if hasattr(obj, "to_pandas"):  # datasets.Dataset
        return obj.to_pandas()
    if isinstance(obj, (pd.DataFrame, dict, list)):
        return pd.DataFrame(obj)
    raise NewsloraError(f"{path}: pickle holds a {type(obj).__name__}, not a dataset or table")


def read_table(spec, allow_pickle=False):
    """Load any supported source as a raw DataFrame (columns as in the file)."""
    path = Path(spec)
    if not path.exists():
        if _is_hub_id(spec):
            return _read_hub(spec)
        raise NewsloraError(f"{spec}: file not found")
    if path.is_dir():
        raise NewsloraError(f"{spec}: is a folder, expected a data file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl")
        if suffix in (".pkl", ".pickle"):
            return _read_pickle(path, allow_pickle)
        if _headerless_ag(path):
            return pd.read_csv(
                path,
                header=None,
                names=["class", "title", "description"],
                dtype=str,
                keep_default_na=False,
            )
        sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except NewsloraError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(f"{spec}: cannot read as {suffix or 'csv'}: {detail}") from None


# --- normalising ------------------------------------------------------------------------------


def _text_series(df, spec, text_columns):
    if text_columns:
        missing = [c for c in text_columns if c not in df.columns]
        if missing:
            raise NewsloraError(f"{spec}: missing column '{missing[0]}' (has: {list(df.columns)})")
        cols = list(text_columns)
    elif "text" in df.columns:
        cols = ["text"]
    elif any(c in df.columns for c in TEXT_PARTS):
        cols = [c for c in TEXT_PARTS if c in df.columns]
    else:
        raise NewsloraError(
            f"{spec}: missing column 'text' (or 'title'/'description'); has: {list(df.columns)}"
        )
    parts = [df[c].fillna("").astype(str).str.strip() for c in cols]
    text = parts[0]
    for p in parts[1:]:
        text = (text + " " + p).str.strip()
    return text


def _label_column(df, spec, label_column):
    if label_column:
        if label_column not in df.columns:
            raise NewsloraError(
                f"{spec}: missing column '{label_column}' (has: {list(df.columns)})"
            )
        return label_column
    return next((c for c in LABEL_COLUMNS if c in df.columns), None)


def _label_ids(values, column, spec, labels):
    """Map label values (ints, or class names) to 0..K-1; name the first bad row."""
    offset = 1 if column in ONE_BASED_LABEL_COLUMNS else 0
    by_name = {name.lower(): i for i, name in enumerate(labels)}
    ids = []
    for row, value in enumerate(values, start=1):
        raw = str(value).strip()
        if raw.lower() in by_name:
            ids.append(by_name[raw.lower()])
            continue
        try:
            number = float(raw)
        except ValueError:
            number = None
        if number is None or not number.is_integer() or not 0 <= number - offset < len(labels):
            valid = f"{offset}..{len(labels) - 1 + offset} or one of {labels}"
            raise NewsloraError(
                f"{spec}: row {row}: field '{column}' = {raw!r} is not a valid label ({valid})"
            )
        ids.append(int(number) - offset)
    return ids


def load_examples(
    spec, labels, *, need_labels, clean=True, text_columns=(), label_column="", allow_pickle=False
):
    """Read `spec` into a DataFrame with `text`, `label` (int, if present or needed) and `id`."""
    df = read_table(spec, allow_pickle=allow_pickle)
    if len(df) == 0:
        raise NewsloraError(f"{spec}: no rows")
    text = _text_series(df, spec, text_columns)
    if clean:
        text = text.map(clean_text)
    empty = text.str.len() == 0
    if empty.any():
        row = int(empty.to_numpy().argmax()) + 1
        raise NewsloraError(f"{spec}: row {row}: field 'text' is empty")
    out = pd.DataFrame({"text": text.to_numpy()})
    out["id"] = df["id"].to_numpy() if "id" in df.columns else range(len(df))
    for extra in PASSED_THROUGH:
        if extra in df.columns:
            out[extra] = df[extra].to_numpy()
    column = _label_column(df, spec, label_column)
    if column is not None:
        out["label"] = _label_ids(df[column].tolist(), column, spec, labels)
    elif need_labels:
        raise NewsloraError(f"{spec}: missing column 'label' (has: {list(df.columns)})")
    return out


def load_with_config(data_cfg, spec, need_labels=True, allow_pickle=False):
    """Load `spec` with a config's labels, text/label columns and cleaning."""
    if not spec:
        raise NewsloraError(
            "no data file given (set it in the config's [data] or on the command line)"
        )
    return load_examples(
        spec,
        data_cfg.labels,
        need_labels=need_labels,
        clean=data_cfg.clean,
        text_columns=data_cfg.text_columns,
        label_column=data_cfg.label_column,
        allow_pickle=allow_pickle,
    )


def split_train_val(df, data_cfg):
    """Optional stratified subset, then a stratified, seeded validation split."""
    seed = data_cfg.seed
    if 0 < data_cfg.max_train_rows < len(df):
        df, _ = train_test_split(
            df, train_size=data_cfg.max_train_rows, random_state=seed, stratify=df["label"]
        )
    val_size = data_cfg.val_rows if data_cfg.val_rows > 0 else data_cfg.val_fraction
    try:
        train, val = train_test_split(
            df, test_size=val_size, random_state=seed, stratify=df["label"]
        )
    except ValueError as e:
        raise NewsloraError(
            f"{data_cfg.train}: cannot cut a stratified validation split: {e}"
        ) from None
    return train.reset_index(drop=True), val.reset_index(drop=True)
