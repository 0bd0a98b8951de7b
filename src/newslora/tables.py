"""Tables: any supported source read into a raw DataFrame, its columns as in the file; and a
table written in the format its name says (write_to: what newslora writes, it reads back).

Accepted sources:
  * the official AG News CSV (no header; class 1-4, title, description);
  * a CSV or TSV with a header (`label,title,description`, `label,text`, `text`, ...); one
    whose header has no comma (tab) but semicolons, tabs, commas or bars is read by that;
  * Parquet, JSON lines (.jsonl, or .json as `datasets` writes it), a JSON array (.json);
  * a .txt file: one text per line, no header (for prediction);
  * any of the text formats compressed, named so: train.csv.gz, .bz2, .xz, or a .zip holding
    one data file (Kaggle ships `train.csv.zip`);
  * a pickled Hugging Face Dataset (.pkl), only with allow_pickle (unpickling runs code);
  * a Hub dataset id, `owner/name[:split]`, loaded with `datasets` (needs the network or cache);
  * a folder: a dataset `datasets` saved (save_to_disk), or Parquet shards.
"""

import bz2
import codecs
import contextlib
import csv
import gzip
import io
import itertools
import json
import lzma
import pickle
import re
import zipfile
from pathlib import Path

import pandas as pd

from newslora import NewsloraError

FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".json", ".txt", ".pkl", ".pickle")
SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
# a byte-order mark says how a file is encoded (Excel writes UTF-8 with one, and its "Unicode
# text" as UTF-16): it overrides the default utf-8, never an encoding the user named
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
SEPARATORS = (",", ";", "\t", "|")  # what a .csv or .tsv may use (Excel in many locales: ;)


def _zip_member(path):
    """The one data file in a .zip (folders, macOS' `__MACOSX/` copies and dot files aside)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as e:
        raise NewsloraError(f"{path}: not a readable zip file ({e})") from None
    files = [n for n in names if not n.endswith("/") and not n.startswith("__MACOSX/")]
    files = [n for n in files if not Path(n).name.startswith(".")]
    if len(files) != 1:
        raise NewsloraError(f"{path}: holds {len(files)} files {files[:5]}; unzip it, give one")
    return files[0]


def _open_zip(path, mode="rb", **kw):
    member = zipfile.ZipFile(path).open(_zip_member(path))
    return io.TextIOWrapper(member, **kw) if "t" in mode else member


# compressed files (`train.csv.gz`), opened as their decompressed bytes for every reader
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": _open_zip}


def _kind(path, look_inside=True):
    """The file's own suffix, under a compression suffix: `.csv` for `train.csv.gz`, and for
    a .zip its data file's (`archive.zip` holding `train.csv`: `.csv`)."""
    suffix = path.suffix.lower()
    if suffix == ".zip" and look_inside and path.is_file():
        return _kind(Path(_zip_member(path)))
    return Path(path.stem).suffix.lower() if suffix in OPENERS else suffix


def write_to(df, path, name):
    """`df` written to `path` in the format `name` says (the output's name, where `path` is a
    temporary file): .parquet, .jsonl (lines), .json (an array), .tsv, else CSV; compressed
    where the name ends in .gz, .bz2, .xz or .zip, as newslora reads them back."""
    name = Path(name)
    kind, suffix = _kind(name, look_inside=False), name.suffix.lower()
    with contextlib.ExitStack() as stack:
        if suffix == ".zip":
            archive = stack.enter_context(zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED))
            f = stack.enter_context(archive.open(name.stem, "w"))
        elif suffix == ".gz":  # gzip.open would record the temporary file's name inside
            raw = stack.enter_context(open(path, "wb"))
            f = stack.enter_context(gzip.GzipFile(name.stem, "wb", fileobj=raw))
        else:
            f = stack.enter_context(OPENERS.get(suffix, open)(path, "wb"))
        if kind == ".parquet":
            df.to_parquet(f, index=False)
        elif kind in (".json", ".jsonl"):
            lines = kind == ".jsonl"
            f.write(df.to_json(orient="records", lines=lines, force_ascii=False).encode())
        else:
            df.to_csv(f, sep="\t" if kind == ".tsv" else ",", index=False, encoding="utf-8")


def is_hub_id(spec):
    """`owner/name` or `owner/name:split`; a missing `data/train.csv` is a missing file."""
    if _kind(Path(spec)) in FILE_SUFFIXES:
        return False
    return re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.\[\]%:-]+)?", spec) is not None


def _read_hub(spec):
    import datasets

    name, _, split = spec.partition(":")
    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # offline, unknown id, unknown split: all end the same way for a user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(
            f"{spec}: not a local file, and the Hub dataset could not be loaded ({first})"
        ) from None
    return dataset_frame(dataset)


def dataset_frame(dataset):
    """A `datasets.Dataset` as a DataFrame; `attrs["class_names"]` keeps the names of each
    ClassLabel column (AG News on the Hub stores ids 0..3 with World ... Sci/Tech)."""
    from datasets import ClassLabel

    df = dataset.to_pandas()
    df.attrs["class_names"] = {
        column: list(feature.names)
        for column, feature in dataset.features.items()
        if isinstance(feature, ClassLabel)
    }
    return df


def _open(path, mode, **kw):
    return OPENERS.get(Path(path).suffix.lower(), open)(path, mode, **kw)


def _encoding(path, encoding):
    """`encoding`, or where the setting is the default utf-8, the one a byte-order mark names,
    or UTF-16 where every other byte of the start is zero (UTF-16 written without a mark)."""
    if codecs.lookup(encoding).name != "utf-8":
        return encoding
    with _open(path, "rb") as f:
        head = f.read(2048)
    marked = next((name for bom, name in BOMS if head.startswith(bom)), None)
    if marked or len(head) < 4:
        return marked or encoding
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > 0.75 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) > 0.75 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return encoding


def _undecodable(path, encoding):
    """Where the file first fails to decode, as a line to open it at ("line 50,002 (byte
    0xe9)"): the reader's own error counts bytes from the start of a chunk, not of the file."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with _open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as e:
                return f"line {number:,} (byte 0x{e.object[e.start]:02x})"
    return "the end of the file (a character cut short)"


def _read(reader, path, **options):
    """A pandas reader on the file's decompressed bytes (a .gz, .bz2, .xz or .zip opened here,
    so that every format reads the same way from each)."""
    with _open(path, "rb") as f:
        return reader(f, **options)


def _first_rows(path, sep, encoding, n=1):
    """The first `n` non-blank rows of a CSV read with `sep`."""
    csv.field_size_limit(1 << 30)  # news cells can be long; the default limit is 128 KiB
    with _open(path, "rt", newline="", encoding=encoding) as f:  # blank lines: pandas skips them
        return list(itertools.islice((row for row in csv.reader(f, delimiter=sep) if any(row)), n))


def _headerless_ag(first):
    """The original AG News CSV has no header: its first row starts with a class number."""
    return len(first) == 3 and first[0].strip().isdigit()


def column_names(names, spec, where=""):
    """Column names as a user reads them, surrounding spaces dropped (`label, text` names
    `text`); a name given twice is refused."""
    names = [str(n).strip() for n in names]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise NewsloraError(f"{spec}: duplicated column '{twice}'{where}")
    return names


def _separator(path, sep, encoding, first):
    """The separator of a .csv (.tsv) whose header has no comma (tab) but another of SEPARATORS,
    and whose next row has as many fields by it (a headerless text with a ; is no header)."""
    if len(first) != 1:
        return sep
    for other in (s for s in SEPARATORS if s != sep):
        rows = _first_rows(path, other, encoding, n=2) if other in first[0] else []
        if rows and len(rows[0]) > 1 and all(len(row) == len(rows[0]) for row in rows):
            return other
    return sep


def _read_csv(path, sep, encoding):
    rows = _first_rows(path, sep, encoding)
    if not rows:
        raise NewsloraError(f"{path}: empty file (no header, no rows)")
    found = _separator(path, sep, encoding, rows[0])
    if found != sep:  # the header split again, by the separator found
        sep, rows = found, _first_rows(path, found, encoding)
    first = rows[0]
    options = dict(sep=sep, dtype=str, keep_default_na=False, encoding=encoding)
    if _headerless_ag(first):
        names = ["class", "title", "description"]
        return _read(pd.read_csv, path, header=None, names=names, **options)
    column_names(first, path, " in the header")  # before pandas renames a second `text` to `text.1`
    try:
        df = _read(pd.read_csv, path, **options)
    except pd.errors.ParserError as e:
        raise NewsloraError(f"{path}: {_fields_error(str(e), sep)}") from None
    if not isinstance(df.index, pd.RangeIndex):  # pandas took the extra fields for an index
        return _without_empty_extras(path, first, df.index.nlevels, options)
    return df


def _without_empty_extras(path, header, extra, options):
    """A CSV whose rows have `extra` fields more than its header: read, where they are empty
    (a comma closing every row, as some exporters write), else an error naming the first row
    that fills one (a comma inside an unquoted text)."""
    names = [*header, *(f"extra {i}" for i in range(extra))]
    df = _read(pd.read_csv, path, header=0, names=names, **options)
    filled = (df[names[len(header) :]] != "").any(axis=1).to_numpy()
    if filled.any():
        raise NewsloraError(
            f"{path}: row {int(filled.argmax()) + 1}: {len(names)} fields under a header of "
            f"{len(header)}{_quote_hint(options['sep'])}"
        )
    return df[header]


def _fields_error(message, sep):
    """pandas' "Expected 2 fields in line 3, saw 3" in plain words, with the likely cause."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if not found:
        return f"cannot read as .csv: {message.strip().splitlines()[-1][:200]}"
    header, line, fields = found.groups()
    return f"line {line}: {fields} fields under a header of {header}{_quote_hint(sep)}"


def _quote_hint(sep):
    shown = {"\t": "tab"}.get(sep, f"'{sep}'")
    return f" (a {shown} inside a text? quote that field)"


def _read_json(path, encoding, lines=False):
    """A JSON file as a table (_json_frame). One that is not valid JSON is named by its line:
    pandas counts characters from the start of a chunk."""
    try:
        return _json_frame(path, encoding, lines)
    except UnicodeDecodeError:
        raise  # read_table names the line that does not decode
    except ValueError:
        where = _json_error(path, encoding)
        if where is None:
            raise
        raise NewsloraError(f"{path}: {where}") from None


def _json_frame(path, encoding, lines):
    """A JSON array of records, or one key holding them (`{"data": [...]}`), else JSON lines
    (`datasets`' to_json writes lines to .json); with `lines` (.jsonl), JSON lines only."""
    if lines:
        return _read(pd.read_json, path, lines=True, encoding=encoding)
    try:
        df = _read(pd.read_json, path, encoding=encoding)
    except ValueError:  # not one JSON document
        return _read(pd.read_json, path, lines=True, encoding=encoding)
    if len(df.columns) == 1 and len(df) and all(isinstance(v, dict) for v in df.iloc[:, 0]):
        return pd.DataFrame(df.iloc[:, 0].tolist())
    return df


def _json_error(path, encoding):
    """Where a JSON file breaks: its first bad line where it is JSON lines (its first line
    reads alone), else the place in the whole document; None if it is valid JSON after all."""
    with _open(path, "rt", encoding=encoding) as f:
        text = f.read()
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if rows and _json_fault(rows[0][1]) is None:
        for number, line in rows:
            if fault := _json_fault(line):
                return f"line {number:,} is not valid JSON ({fault.msg}, column {fault.colno})"
        return None
    fault = _json_fault(text)
    return fault and f"not valid JSON ({fault.msg}, line {fault.lineno:,} column {fault.colno})"


def _json_fault(text):
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return e
    return None


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
        with _open(path, "rb") as f:
            obj = pickle.load(f)
    except Exception as e:  # any damaged or foreign file: unpickling errors have many types
        raise NewsloraError(f"{path}: not a readable pickle ({type(e).__name__})") from None
    if hasattr(obj, "features") and hasattr(obj, "to_pandas"):  # datasets.Dataset
        return dataset_frame(obj)
    if hasattr(obj, "to_pandas"):  # a pyarrow Table
        return obj.to_pandas()
    if isinstance(obj, (pd.DataFrame, dict, list)):
        return pd.DataFrame(obj)
    raise NewsloraError(f"{path}: pickle holds a {type(obj).__name__}, not a dataset or table")


def _read_folder(path):
    """A dataset `datasets` saved (save_to_disk), or a folder of Parquet shards (a Hub
    dataset's `data/` as downloaded)."""
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise NewsloraError(f"{path}: holds the splits {splits}; give one split's folder")
    if (path / "state.json").is_file():
        import datasets

        return dataset_frame(datasets.load_from_disk(str(path)))
    shards = sorted(path.glob("*.parquet"))
    if not shards:
        raise NewsloraError(
            f"{path}: is a folder, expected a data file (or a saved dataset, or .parquet shards)"
        )
    return pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)


def read_table(spec, allow_pickle=False, encoding="utf-8"):
    """Load any supported source as a raw DataFrame (columns as in the file)."""
    path = Path(spec)
    if not path.exists():
        if is_hub_id(spec):
            return _read_hub(spec)
        raise NewsloraError(f"{spec}: file not found")
    suffix = "folder" if path.is_dir() else _kind(path)
    if suffix in SPREADSHEETS:
        raise NewsloraError(f"{spec}: a spreadsheet; save it as CSV (or Parquet) and use that")
    try:
        if suffix == "folder":
            return _read_folder(path)
        if suffix == ".parquet":
            return _read(pd.read_parquet, path)
        if suffix in (".pkl", ".pickle"):
            return _read_pickle(path, allow_pickle)
        encoding = _encoding(path, encoding)
        if suffix in (".json", ".jsonl"):
            return _read_json(path, encoding, lines=suffix == ".jsonl")
        if suffix == ".txt":
            return _read_lines(path, encoding)
        return _read_csv(path, "\t" if suffix == ".tsv" else ",", encoding)
    except NewsloraError:
        raise
    except UnicodeDecodeError:
        raise NewsloraError(
            f"{spec}: {_undecodable(path, encoding)} is not valid {encoding} "
            "(set data.encoding, or --encoding, e.g. latin-1)"
        ) from None
    except LookupError:
        raise NewsloraError(f"{spec}: unknown encoding '{encoding}'") from None
    except (ValueError, OSError, EOFError, lzma.LZMAError, csv.Error, pd.errors.ParserError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NewsloraError(f"{spec}: cannot read as {suffix or 'csv'}: {detail[:200]}") from None
