"""Data: any labelled or unlabelled text table in, a DataFrame with `text` (+ `label`, `id`) out.

The file itself is read by `tables.read_table` (every format newslora accepts); here its
columns are found (any case, surrounding spaces dropped), its text built (title + " " +
description, or `text`, or data.text_columns), optionally cleaned of AG's escapes, and its
labels mapped to ids (numbers, or class names of data.labels).
"""

import html
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from newslora import NewsloraError, warn
from newslora.config import AG_NEWS_LABELS
from newslora.tables import column_names, read_table

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


# --- normalising ------------------------------------------------------------------------------


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
        if len(df.columns) == 1 and " " in str(df.columns[0]):  # a text where a name should be
            hint = f"{TEXT_HINT}; texts without a header: a first line `text`, or a .txt name"
        elif len(df.columns) == 1 and any(d in str(df.columns[0]) for d in ";\t|"):
            hint = " (rows split by another separator than the header's?)"
        raise NewsloraError(
            f"{spec}: missing column 'text' (or 'title'/'description'); "
            f"has: {list(df.columns)}{hint}"
        )
    for c in cols:  # a list or array is no text (tokens, or several fields in one)
        listed = ~df[c].map(pd.api.types.is_scalar)
        if listed.any():
            raise NewsloraError(
                f"{spec}: row {row_numbers(listed, 1)}: field '{c}' holds a list, not a text"
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


def _first_id(column):
    """The id of the first class in this column: 1 in AG News' own CSV and Kaggle's copy."""
    return 1 if column.lower() in ONE_BASED_LABEL_COLUMNS else 0


def _class_reader(labels, column):
    """A function from a label's text to its id in `labels` (a class name in any case, Sci/Tech
    as sci-tech, or an id; from 1 in AG News' own 1-based columns), None if it is none."""
    offset = _first_id(column)
    exact = {name.lower(): i for i, name in enumerate(labels)}
    loose = {_class_key(name): i for i, name in enumerate(labels) if re.search("[a-z]", name, re.I)}

    def class_id(raw):
        found = exact.get(_plain(raw).lower(), loose.get(_class_key(raw)))
        if found is not None:
            return found
        try:
            number = float(raw)
        except ValueError:
            return None
        ok = number.is_integer() and 0 <= number - offset < len(labels)
        return int(number) - offset if ok else None

    return class_id


def _plain(raw):
    """A float column's id ("3.0") as "3"; anything else as given."""
    return raw[:-2] if raw.endswith(".0") and raw[:-2].isdigit() else raw


def _label_ids(values, column, spec, labels):
    """Map label values (ints, or class names) to 0..K-1; name the first bad row."""
    class_id = _class_reader(labels, column)
    ids = []
    for row, value in enumerate(values, start=1):
        raw = "" if pd.api.types.is_scalar(value) and pd.isna(value) else str(value).strip()
        ids.append(class_id(raw))
        if ids[-1] is None:
            first = _first_id(column)
            valid = f"{first}..{len(labels) - 1 + first}, or a class of data.labels: {labels}"
            raise NewsloraError(
                f"{spec}: row {row}: field '{column}' = {raw!r} is not a valid label ({valid})"
                + _other_classes(values, class_id, len(labels))
            )
    return ids


MAX_CLASSES = 1000  # more distinct values than this are not classes (a text column?)
_LETTER = re.compile(r"[^\W\d_]")  # a letter of any script: "sport", "Спорт", "体育"


def own_classes(values, column, labels):
    """A file's own classes where it is labelled in others than `labels`: most of its distinct
    values are none of them (a bad row among known classes is an error, not a new class).
    Names (each with a letter) are sorted; ids must run 0..K-1 or 1..K. None where the values
    are no such set: a blank, a list (multi-label), other numbers (scores), names and ids mixed."""
    names = {}
    for value in values:
        if not pd.api.types.is_scalar(value):
            return None
        raw = "" if pd.isna(value) else _plain(str(value).strip())
        names.setdefault(raw.lower(), raw)  # "Sports" and "sports" are one class, as read
    if not 2 <= len(names) <= MAX_CLASSES or "" in names:
        return None
    class_id = _class_reader(labels, column)
    if 2 * sum(class_id(n) is None for n in names.values()) <= len(names):
        return None
    numbers = sorted(int(n) for n in names.values() if n.isascii() and n.isdigit())
    if len(numbers) == len(names):
        runs = (list(range(first, first + len(names))) for first in (0, 1))
        return [str(n) for n in numbers] if numbers in runs else None
    if all(_LETTER.search(n) for n in names.values()):
        return sorted(names.values(), key=str.lower)
    return None


def _other_classes(values, class_id, n_labels):
    """A hint for a file labelled otherwise: in classes none of data.labels, in some other
    names besides them, or in ids from 1 or past data.labels."""
    if not all(pd.api.types.is_scalar(v) for v in values):
        return "; one class per row: a list of labels (multi-label) is not read"
    names = sorted({str(v).strip() for v in values})
    unknown = [n for n in names if class_id(n) is None]
    if len(names) <= 50 and len(unknown) == len(names):
        return f"; the file's classes are {names}: data.labels={','.join(names)} reads them"
    other_names = [n for n in unknown if _LETTER.search(n)]
    if 2 <= len(other_names) <= 20:  # one is the value the error names already
        return f"; names not in data.labels: {other_names}"
    numbers = {n.removesuffix(".0") for n in names}
    if numbers == {str(i) for i in range(1, n_labels + 1)}:
        return "; ids from 1 are read from a column named `class` (or `Class Index`)"
    if numbers == {str(i) for i in range(len(numbers))}:
        return f"; the file has ids 0..{len(numbers) - 1}: data.labels needs {len(numbers)} names"
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
    own_labels=False,
):
    """Read `spec` into a DataFrame with `text`, `label` (int, if present or needed) and `id`.

    for_prediction: every row is an input, so an empty text is kept (with a warning naming
    the rows) and any label column is ignored (unlabelled files carry placeholders like -1).
    own_labels: a file labelled mostly in other classes than `labels` is read in its own
    (own_classes), with a warning.
    `out.attrs["id_column"]` names the column the IDs came from (None: 0..n-1);
    `out.attrs["labels"]` the class names its label ids index."""
    df = read_table(spec, allow_pickle=allow_pickle, encoding=encoding)
    class_names = {str(k).strip(): v for k, v in df.attrs.get("class_names", {}).items()}
    df = df.set_axis(column_names(df.columns, spec), axis=1)
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
        values, names = df[column].tolist(), class_names.get(column)
        out["label"], labels = _labels(values, column, spec, labels, own_labels, names)
    elif need_labels and not for_prediction:
        raise NewsloraError(f"{spec}: missing column 'label' (has: {list(df.columns)}){LABEL_HINT}")
    out.attrs["labels"] = list(labels)
    return out


def _labels(values, column, spec, labels, own_labels, names=None):
    """Label ids, and the class names they index: `labels`, or with `own_labels` the file's
    own classes where `labels` does not read the file. `names`: a ClassLabel column's class
    names (tables.dataset_frame), matched to `labels` by name first, and with `own_labels`
    taken in their own order; else its ids are read by position, as any file's."""
    by_name = None
    if names:
        named = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in values]
        try:
            return _label_ids(named, column, spec, labels), labels
        except NewsloraError as e:
            if own_labels:
                return _own(named, column, spec, labels, names)
            by_name = e  # the error to show if the ids do not read either: it names classes
    try:
        return _label_ids(values, column, spec, labels), labels
    except NewsloraError as e:
        own = own_labels and own_classes(values, column, labels)
        if not own:
            raise (by_name or e) from None
    return _own(values, column, spec, labels, own)


def _own(values, column, spec, labels, own):
    """Label ids in the file's own classes `own`, said in a warning."""
    shown = own if len(own) <= 10 else [*own[:10], f"... ({len(own)} in all)"]
    warn(f"{spec}: classes read from the file, not data.labels {list(labels)}: {shown}")
    return _label_ids(values, column, spec, own), own


def training_labels(data_cfg):
    """The class names `train` will use: data.labels, or where they are left at AG News' four
    the classes of a local training file labelled in others (`budget` counts that head)."""
    spec = data_cfg.train
    if list(data_cfg.labels) != AG_NEWS_LABELS or not spec or not Path(spec).exists():
        return list(data_cfg.labels)  # a Hub dataset is not downloaded for a count
    return load_with_config(replace(data_cfg, clean=False), spec, own_labels=True).attrs["labels"]


def for_file(data_cfg, encoding=None, text_columns=None, label_column=None):
    """A run's data config with the options a command gives for one file (None: the run's)."""
    given = {"encoding": encoding, "text_columns": text_columns, "label_column": label_column}
    return replace(data_cfg, **{k: v for k, v in given.items() if v})


def load_with_config(
    data_cfg, spec, need_labels=True, allow_pickle=False, for_prediction=False, own_labels=False
):
    """Load `spec` with a config's labels, text/label columns, encoding and cleaning.
    own_labels: where data.labels is left at AG News' four, a file labelled in other classes is
    read in its own (own_classes), named in `out.attrs["labels"]`."""
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
        own_labels=own_labels and list(data_cfg.labels) == AG_NEWS_LABELS,
    )
