"""Data: any labelled or unlabelled text table in, a DataFrame with `text` (+ `label`, `id`) out.

Accepted sources:
  * the official AG News CSV (no header; class 1-4, title, description);
  * a CSV with a header (`label,title,description`, `label,text`, `text`, ...);
  * Parquet, JSON lines (.jsonl, or .json as `datasets` writes it), a JSON array (.json);
  * a .txt file: one text per line, no header (for prediction);
  * any of the text formats compressed, named so: train.csv.gz, .bz2, .xz;
  * a pickled Hugging Face Dataset (.pkl), only with allow_pickle (unpickling runs code);
  * a Hub dataset id, `owner/name[:split]`, loaded with `datasets` (needs the network or cache).
Text is title + " " + description (or `text`), optionally cleaned of AG's escapes.
"""

import bz2
import codecs
import csv
import gzip
import html
import lzma
import pickle
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from newslora import NewsloraError, warn

LABEL_COLUMNS = ("label", "class", "Class Index", "labels", "category")
ONE_BASED_LABEL_COLUMNS = ("class", "class index")  # AG News' original CSV and Kaggle's copy
TEXT_PARTS = ("title", "description")
PASSED_THROUGH = ("source", "origin")  # written by `newslora augment`
# where a file's columns are not the run's: the config keys, and evaluate's / predict's flags
TEXT_HINT = "; name the text columns with data.text_columns (evaluate, predict: --text-columns)"
LABEL_HINT = "; name the label column with data.label_column (evaluate: --label-column)"


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


FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".json", ".txt", ".pkl", ".pickle")
SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
# a byte-order mark says how a file is encoded (Excel writes UTF-8 with one, and its "Unicode
# text" as UTF-16): it overrides the default utf-8, never an encoding the user named
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# compressed text files (`train.csv.gz`): pandas infers the compression from the name too
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _kind(path):
    """The file's own suffix, under a compression suffix: `.csv` for `train.csv.gz`."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix in OPENERS else suffix


def is_hub_id(spec):
    """`owner/name` or `owner/name:split`; a missing `data/train.csv` is a missing file."""
    if _kind(Path(spec)) in FILE_SUFFIXES:
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


def _open(path, mode, **kw):
    return OPENERS.get(Path(path).suffix.lower(), open)(path, mode, **kw)


def _encoding(path, encoding):
    """`encoding`, or the one a byte-order mark names when the setting is the default utf-8."""
    if codecs.lookup(encoding).name != "utf-8":
        return encoding
    with _open(path, "rb") as f:
        head = f.read(3)
    return next((name for bom, name in BOMS if head.startswith(bom)), encoding)


def _first_row(path, sep, encoding):
    csv.field_size_limit(1 << 30)  # news cells can be long; the default limit is 128 KiB
    with _open(path, "rt", newline="", encoding=encoding) as f:  # blank lines: pandas skips them
        return next((row for row in csv.reader(f, delimiter=sep) if any(row)), [])


def _headerless_ag(first):
    """The original AG News CSV has no header: its first row starts with a class number."""
    return len(first) == 3 and first[0].strip().isdigit()


def _read_csv(path, sep, encoding):
    first = _first_row(path, sep, encoding)
    if not first:
        raise NewsloraError(f"{path}: empty file (no header, no rows)")
    if _headerless_ag(first):
        names = ["class", "title", "description"]
        return pd.read_csv(
            path, header=None, names=names, dtype=str, keep_default_na=False, encoding=encoding
        )
    seen = set()
    for name in first:  # pandas would silently rename a second `text` to `text.1`
        if name.strip() in seen:
            raise NewsloraError(f"{path}: duplicated column '{name.strip()}' in the header")
        seen.add(name.strip())
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding)


def _read_json(path, encoding):
    """A JSON array of records, or one key holding them (`{"data": [...]}`), else JSON lines
    (`datasets`' to_json writes lines to .json)."""
    try:
        df = pd.read_json(path, encoding=encoding)
    except ValueError:
        return pd.read_json(path, lines=True, encoding=encoding)
    if len(df.columns) == 1 and len(df) and all(isinstance(v, dict) for v in df.iloc[:, 0]):
        return pd.DataFrame(df.iloc[:, 0].tolist())
    return df


def _read_lines(path, encoding):
    """One text per line, no header; blank lines stay rows, so IDs are line numbers - 1."""
    with _open(path, "rt", encoding=encoding) as f:
        return pd.DataFrame({"text": f.read().splitlines()})


def _read_pickle(path, allow_pickle):
    if not allow_pickle:
        raise NewsloraError(
            f"{path}: reading a pickle runs code from the file; pass --allow-pickle if you trust it"
        )
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)
    except Exception as e:  # any damaged or foreign file: unpickling errors have many types
        raise NewsloraError(f"{path}: not a readable pickle ({type(e).__name__})") from None
    if hasattr(obj, "to_pandas"):  # datasets.Dataset
        return obj.to_pandas()
    if isinstance(obj, (pd.DataFrame, dict, list)):
        return pd.DataFrame(obj)
    raise NewsloraError(f"{path}: pickle holds a {type(obj).__name__}, not a dataset or table")


def read_table(spec, allow_pickle=False, encoding="utf-8"):
    """Load any supported source as a raw DataFrame (columns as in the file)."""
    path = Path(spec)
    if not path.exists():
        if is_hub_id(spec):
            return _read_hub(spec)
        raise NewsloraError(f"{spec}: file not found")
    if path.is_dir():
        raise NewsloraError(f"{spec}: is a folder, expected a data file")
    suffix = _kind(path)
    if suffix in SPREADSHEETS:
        raise NewsloraError(f"{spec}: a spreadsheet; save it as CSV (or Parquet) and use that")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".pkl", ".pickle"):
            return _read_pickle(path, allow_pickle)
        encoding = _encoding(path, encoding)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, encoding=encoding)
        if suffix == ".json":
            return _read_json(path, encoding)
        if suffix == ".txt":
            return _read_lines(path, encoding)
        return _read_csv(path, "\t" if suffix == ".tsv" else ",", encoding)
    except NewsloraError:
        raise
    except UnicodeDecodeError as e:
        raise NewsloraError(
            f"{spec}: byte {e.start} is not valid {encoding} "
            "(set data.encoding, or --encoding, e.g. latin-1)"
        ) from None
    except LookupError:
        raise NewsloraError(f"{spec}: unknown encoding '{encoding}'") from None
    except (ValueError, OSError, EOFError, lzma.LZMAError, csv.Error, pd.errors.ParserError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(f"{spec}: cannot read as {suffix or 'csv'}: {detail[:200]}") from None


# --- normalising ------------------------------------------------------------------------------


def _columns(df, spec):
    """The table with its column names as a user reads them: `label, text` names `text`."""
    names = [str(c).strip() for c in df.columns]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise NewsloraError(f"{spec}: duplicated column '{twice}'")
    return df.set_axis(names, axis=1)


def _find(df, name):
    """The column called `name`, else the one column so called in another case (Kaggle's AG
    News copy has `Class Index,Title,Description`); None if there is none."""
    if name in df.columns:
        return name
    found = [c for c in df.columns if c.lower() == name.lower()]
    return found[0] if len(found) == 1 else None


def _text_series(df, spec, text_columns):
    own = _find(df, "text")
    named = [_find(df, c) for c in text_columns or ()]
    if text_columns and own and not any(named):
        cols = [own]  # newslora's own layout (`augment` writes it), whatever the config names
    elif text_columns:
        if None in named:
            missing = text_columns[named.index(None)]
            raise NewsloraError(
                f"{spec}: missing column '{missing}' (has: {list(df.columns)}){TEXT_HINT}"
            )
        cols = named
    elif own:
        cols = [own]
    elif any(_find(df, c) for c in TEXT_PARTS):
        cols = [c for c in (_find(df, c) for c in TEXT_PARTS) if c]
    else:
        hint = TEXT_HINT
        if len(df.columns) == 1 and any(d in str(df.columns[0]) for d in ";\t|"):
            hint = " (is the file comma-separated? a .tsv name reads tabs)"
        elif len(df.columns) == 1 and " " in str(df.columns[0]):  # a text where a name should be
            hint = f"{TEXT_HINT}; texts without a header: a first line `text`, or a .txt name"
        raise NewsloraError(
            f"{spec}: missing column 'text' (or 'title'/'description'); "
            f"has: {list(df.columns)}{hint}"
        )
    parts = [df[c].fillna("").astype(str).str.strip() for c in cols]
    text = parts[0]
    for p in parts[1:]:
        text = (text + " " + p).str.strip()
    return text


def _label_column(df, spec, label_column):
    if label_column:
        found = _find(df, label_column) or _find(df, "label")  # or newslora's own layout
        if found is None:
            raise NewsloraError(
                f"{spec}: missing column '{label_column}' (has: {list(df.columns)}){LABEL_HINT}"
            )
        return found
    return next((c for c in (_find(df, n) for n in LABEL_COLUMNS) if c), None)


def _class_key(name):
    """A class name with letters, as matched: any case, spaces and punctuation (Sci/Tech =
    sci-tech); names without letters match exactly, so that "-1" never reads as "1"."""
    return re.sub("[^a-z0-9]", "", str(name).lower())


def _label_ids(values, column, spec, labels):
    """Map label values (ints, or class names) to 0..K-1; name the first bad row."""
    offset = 1 if column.lower() in ONE_BASED_LABEL_COLUMNS else 0
    exact = {name.lower(): i for i, name in enumerate(labels)}
    loose = {_class_key(name): i for i, name in enumerate(labels) if re.search("[a-z]", name, re.I)}

    def class_id(raw):
        found = exact.get(raw.lower(), loose.get(_class_key(raw)))
        if found is not None:
            return found
        try:
            number = float(raw)
        except ValueError:
            return None
        ok = number.is_integer() and 0 <= number - offset < len(labels)
        return int(number) - offset if ok else None

    ids = []
    for row, value in enumerate(values, start=1):
        raw = str(value).strip()
        ids.append(class_id(raw))
        if ids[-1] is None:
            valid = f"{offset}..{len(labels) - 1 + offset}, or a class of data.labels: {labels}"
            raise NewsloraError(
                f"{spec}: row {row}: field '{column}' = {raw!r} is not a valid label ({valid})"
                + _other_classes(values, class_id, len(labels))
            )
    return ids


def _other_classes(values, class_id, n_labels):
    """A hint for a file labelled otherwise: in classes none of data.labels, or ids from 1."""
    names = sorted({str(v).strip() for v in values})
    if len(names) <= 50 and not any(class_id(n) is not None for n in names):
        return f"; the file's classes are {names}: list them in data.labels"
    numbers = {n.removesuffix(".0") for n in names}
    if numbers == {str(i) for i in range(1, n_labels + 1)}:
        return "; ids from 1 are read from a column named `class` (or `Class Index`)"
    return ""


def _id_column(df, spec):
    """The ID column, matched case-insensitively (`id`, `ID`, `Id`)."""
    found = [c for c in df.columns if str(c).strip().lower() == "id"]
    if len(found) > 1:
        raise NewsloraError(f"{spec}: more than one ID column: {found}")
    return found[0] if found else None


def row_numbers(mask, limit=5):
    """The 1-based data rows where `mask` holds, the first `limit` of them, for messages."""
    rows = [int(i) + 1 for i in mask.to_numpy().nonzero()[0][:limit]]
    return ", ".join(map(str, rows)) + (", ..." if mask.sum() > limit else "")


def load_examples(
    spec,
    labels,
    *,
    need_labels,
    clean=True,
    text_columns=(),
    label_column="",
    allow_pickle=False,
    encoding="utf-8",
    for_prediction=False,
):
    """Read `spec` into a DataFrame with `text`, `label` (int, if present or needed) and `id`.

    for_prediction: every row is an input, so an empty text is kept (with a warning naming
    the rows) and any label column is ignored (unlabelled files carry placeholders like -1).
    `out.attrs["id_column"]` names the column the IDs came from (None: 0..n-1)."""
    df = _columns(read_table(spec, allow_pickle=allow_pickle, encoding=encoding), spec)
    if len(df) == 0:
        raise NewsloraError(f"{spec}: no rows")
    text = _text_series(df, spec, text_columns)
    if clean:
        text = text.map(clean_text)
    empty = text.str.len() == 0
    if empty.any() and not for_prediction:
        raise NewsloraError(f"{spec}: row {row_numbers(empty, 1)}: field 'text' is empty")
    if empty.any():
        warn(f"{spec}: {int(empty.sum())} row(s) with empty text (rows {row_numbers(empty)})")
    out = pd.DataFrame({"text": text.to_numpy()})
    id_column = _id_column(df, spec)
    out["id"] = df[id_column].to_numpy() if id_column is not None else range(len(df))
    out.attrs["id_column"] = id_column
    for extra in PASSED_THROUGH:
        if extra in df.columns:
            out[extra] = df[extra].to_numpy()
    column = None if for_prediction else _label_column(df, spec, label_column)
    if column is not None:
        out["label"] = _label_ids(df[column].tolist(), column, spec, labels)
    elif need_labels and not for_prediction:
        raise NewsloraError(f"{spec}: missing column 'label' (has: {list(df.columns)}){LABEL_HINT}")
    return out


def for_file(data_cfg, encoding=None, text_columns=None, label_column=None):
    """A run's data config with the options a command gives for one file (None: the run's)."""
    given = {"encoding": encoding, "text_columns": text_columns, "label_column": label_column}
    return replace(data_cfg, **{k: v for k, v in given.items() if v})


def load_with_config(data_cfg, spec, need_labels=True, allow_pickle=False, for_prediction=False):
    """Load `spec` with a config's labels, text/label columns, encoding and cleaning."""
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
        encoding=data_cfg.encoding,
        for_prediction=for_prediction,
    )
