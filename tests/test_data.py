import pickle
import zipfile

import pandas as pd
import pytest
from conftest import DATA, LABELS

from newslora import NewsloraError
from newslora.config import DataConfig
from newslora.data import clean_text, load_examples, load_with_config
from newslora.splits import split_train_val
from newslora.tables import read_table, write_to


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Bush #39;s plan", "Bush's plan"),
        ("He said,  quot;no quot; today", 'He said, "no" today'),
        ("&lt;b&gt;Oil&lt;/b&gt; rises", "Oil rises"),
        ("Texas Instruments Inc. &lt;TXN.N&gt;, and", "Texas Instruments Inc., and"),
        ("costs \\$10 million", "costs $10 million"),
        ("line\\break  and   spaces", "line break and spaces"),
        ("AT&amp;T and Q&amp;A", "AT&T and Q&A"),
        ("plain text stays", "plain text stays"),
    ],
)
def test_clean_fixes_ag_escapes(raw, clean):
    assert clean_text(raw) == clean
    assert clean_text(clean_text(raw)) == clean_text(raw)  # idempotent


def test_clean_is_idempotent_on_real_rows(pool):
    for text in (pool["title"] + " " + pool["description"]).head(2000):
        once = clean_text(text)
        assert clean_text(once) == once
        assert "#39;" not in once and "quot;" not in once


def test_official_headerless_format_maps_classes_1_to_4():
    df = load_examples(DATA / "agnews" / "test.csv", LABELS, need_labels=True)
    assert len(df) == 7600
    assert df["label"].value_counts().to_dict() == {0: 1900, 1: 1900, 2: 1900, 3: 1900}
    assert df["text"][0].startswith("Fears for T N pension after talks Unions representing")
    assert df["label"][0] == 2  # "3" = Business in the original file


def test_header_csv_parquet_jsonl_and_pickle_agree(tmp_path):
    df = pd.DataFrame({"label": [0, 3, 1], "title": ["A", "", "C"], "description": ["x", "y", "z"]})
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    with open(tmp_path / "t.pkl", "wb") as f:
        pickle.dump(df, f)
    for name in ("t.csv", "t.parquet", "t.jsonl", "t.pkl"):
        out = load_examples(tmp_path / name, LABELS, need_labels=True, allow_pickle=True)
        assert out["text"].tolist() == ["A x", "y", "C z"], name
        assert out["label"].tolist() == [0, 3, 1], name


def test_pickle_needs_explicit_permission(tmp_path):
    with open(tmp_path / "t.pkl", "wb") as f:
        pickle.dump({"text": ["a"]}, f)
    with pytest.raises(NewsloraError, match="--allow-pickle"):
        read_table(tmp_path / "t.pkl")


def test_unlabelled_competition_set_reads_in_order():
    df = load_examples(DATA / "competition" / "test_unlabelled.csv", LABELS, need_labels=False)
    assert len(df) == 8000 and "label" not in df
    assert df["id"].tolist() == list(range(8000))


def test_label_names_and_id_column(tmp_path):
    """Class names match in any case, spacing and punctuation: another source's spelling."""
    path = tmp_path / "named.csv"
    names = ["sports", "Sci/Tech", "sci-tech", "SCI_TECH", " World "]
    pd.DataFrame({"id": range(10, 15), "text": list("abcde"), "label": names}).to_csv(
        path, index=False
    )
    df = load_examples(path, LABELS, need_labels=True)
    assert df["label"].tolist() == [1, 3, 3, 3, 0]
    assert df["id"].astype(str).tolist() == ["10", "11", "12", "13", "14"]


@pytest.mark.parametrize(
    "labels, names, ids",
    [
        (["tech", "politics", "Tech", "sport"], ["politics", "sport", "tech"], [2, 0, 2, 1]),
        ([*range(10), 3.0], [str(i) for i in range(10)], [*range(10), 3]),  # ids 0..9
        (
            [5, 1, 2, 3, 4, 6, 7, 8, 9, 10],
            [str(i) for i in range(1, 11)],
            [4, 0, 1, 2, 3, *range(5, 10)],
        ),
        (["Sports", "World", "Sprots"], None, None),  # a typo among known classes
        (["World", "politics", "tech"], ["politics", "tech", "World"], [2, 0, 1]),
        ([0, 1, 2, 3, 4], None, None),  # 5 ids: mostly AG's; the error asks for 5 names
        ([0, 2, 5, 6, 7, 8, 9], None, None),  # ids with gaps
        (["tech", "politics", 5], None, None),  # names mixed with a number
        (["tech", "politics", None], None, None),  # a blank label
        ([0.5, 1.5, 2.5], None, None),  # scores, not classes
        (["Спорт", "Политика", "спорт"], ["Политика", "Спорт"], [1, 0, 1]),  # any script
    ],
)
def test_a_file_in_other_classes_reads_in_its_own(tmp_path, labels, names, ids):
    """own_labels (train, augment, with data.labels left at AG News' four): a file labelled
    mostly in other classes reads in its own; anything else stays a one-line error."""
    path = tmp_path / "other.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels}).to_csv(
        path, index=False
    )
    config = DataConfig()
    if names is None:
        with pytest.raises(NewsloraError, match="is not a valid label"):
            load_with_config(config, path, own_labels=True)
        return
    df = load_with_config(config, path, own_labels=True)
    assert df.attrs["labels"] == names and df["label"].tolist() == ids
    with pytest.raises(NewsloraError, match="is not a valid label"):
        load_with_config(config, path)  # only where asked: evaluate reads a run's classes


@pytest.mark.parametrize(
    "content, message",
    [
        ("label,text\n0,fine\n1,\n", "row 2: field 'text' is empty"),
        ("label,text\n0,fine\n7,bad\n", "row 2: field 'label' = '7' is not a valid label"),
        ("label,body\n0,fine\n", "missing column 'text'"),
        ("text\nonly text\n", "missing column 'label'"),
        ("label,text\n", "no rows"),
        ("label,text\n0,Stocks fall, bonds rise\n1,fine\n", "row 1: 3 fields under a header of 2"),
        ("label,text\n0,fine,\n1,Stocks, bonds\n", "row 2: 3 fields under a header of 2"),
        ("label,text\n0,fine\n1,Stocks fall, bonds rise\n", "line 3: 3 fields under a header of 2"),
        ("label;text\n0,fine\n", "row 1: 2 fields under a header of 1"),
    ],
)
def test_bad_rows_are_named(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(NewsloraError, match=message) as err:
        load_examples(path, LABELS, need_labels=True)
    assert str(path) in str(err.value)


def test_a_bad_byte_deep_in_a_file_is_named_by_its_line(tmp_path):
    """pandas decodes in chunks, and its error counts bytes from a chunk's start; the message
    names the line to open the file at."""
    lines = ["label,text", *(f"1,row {i} is plain ASCII" for i in range(60_000))]
    lines[50_001] = "2,caf\xe9 in latin-1"
    path = tmp_path / "mixed.csv"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(NewsloraError, match=r"line 50,002 \(byte 0xe9\) is not valid utf-8"):
        read_table(path)


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json"])
def test_a_broken_json_line_is_named_by_its_line(name, tmp_path):
    """pandas names a character position; the message names the line (JSON lines, also
    as .json), or the line and column of a document."""
    lines = [f'{{"text": "row {i}", "label": 1}}' for i in range(5_000)]
    lines[4_000] = '{"text": "cut short", "label": 1'
    path = tmp_path / name
    path.write_text("\n".join(lines))
    with pytest.raises(NewsloraError, match=r"line 4,001 is not valid JSON \(Expecting ','"):
        read_table(path)
    path.write_text("[" + ",\n".join(lines[:4_000]) + ",\n{")
    with pytest.raises(NewsloraError, match=r"not valid JSON \(.*, line 4,001 column 2\)"):
        read_table(path)


def test_typed_columns_are_checked_as_text_is(tmp_path):
    """Parquet and JSON carry types CSV cannot: a list where a text should be (tokens) is
    refused, not read as its printed form; a missing label reads as empty, as in a CSV."""
    path = tmp_path / "typed.parquet"
    pd.DataFrame({"text": [["Stocks", "fall"], ["Cup"]], "label": [2, 1]}).to_parquet(path)
    with pytest.raises(NewsloraError, match="row 1, ...: field 'text' holds a list, not a text"):
        load_examples(path, LABELS, need_labels=True)
    pd.DataFrame({"text": ["Stocks fall", "Cup final"], "label": [2.0, None]}).to_parquet(path)
    with pytest.raises(NewsloraError, match="row 2: field 'label' = '' is not a valid label"):
        load_examples(path, LABELS, need_labels=True)


def test_missing_file_and_unreachable_hub_are_named():
    with pytest.raises(NewsloraError, match="nope.csv: file not found"):
        read_table("nope.csv")
    with pytest.raises(NewsloraError, match="data/nope.csv: file not found"):
        read_table("data/nope.csv")  # looks like owner/name, but it is a file path
    with pytest.raises(NewsloraError, match="not a local file"):
        read_table("fancyzhx/ag_news:train")  # HF_HUB_OFFLINE=1 in the tests


KAGGLE = (
    '"Class Index","Title","Description"\n"3","Stocks fall","Wall St."\n"2","Cup final","Goal"\n'
)
HEADERLESS = '"3","Stocks fall","Wall St."\n"2","Cup final","Goal"\n'
TEXTS, IDS = ["Stocks fall Wall St.", "Cup final Goal"], [2, 1]


@pytest.mark.parametrize(
    "name, content, encoding",
    [
        ("kaggle.csv", KAGGLE, "utf-8"),  # Kaggle's AG News copy: capitalised, 1-based
        ("excel.csv", "label,text\n2,Stocks fall Wall St.\n1,Cup final Goal\n", "utf-8-sig"),
        ("excel_headerless.csv", HEADERLESS, "utf-8-sig"),  # the byte-order mark hid the class
        ("unicode.tsv", "Label\tText\n2\tStocks fall Wall St.\n1\tCup final Goal\n", "utf-16"),
        ("spaced.csv", "label, text\n2, Stocks fall Wall St.\n1, Cup final Goal\n", "utf-8"),
        (
            "lines.json",
            '{"text":"Stocks fall Wall St.","label":2}\n{"text":"Cup final Goal","label":1}\n',
            "utf-8",
        ),
        (
            "array.json",
            '[{"text":"Stocks fall Wall St.","label":2},{"text":"Cup final Goal","label":1}]',
            "utf-8",
        ),
        (
            "records.json",
            '{"data": [{"text":"Stocks fall Wall St.","label":2},'
            '{"text":"Cup final Goal","label":1}]}',
            "utf-8",
        ),
        ("blank_first.csv", "\n\nlabel,text\n2,Stocks fall Wall St.\n1,Cup final Goal\n", "utf-8"),
        ("semicolons.csv", "label;text\n2;Stocks fall Wall St.\n1;Cup final Goal\n", "utf-8"),
        ("tabs.csv", "label\ttext\n2\tStocks fall Wall St.\n1\tCup final Goal\n", "utf-8"),
        ("bars.csv", "label|text\n2|Stocks fall Wall St.\n1|Cup final Goal\n", "utf-8"),
        ("commas.tsv", "label,text\n2,Stocks fall Wall St.\n1,Cup final Goal\n", "utf-8"),
        ("closing_commas.csv", "label,text\n2,Stocks fall Wall St.,\n1,Cup final Goal,\n", "utf-8"),
        ("headerless.tsv", HEADERLESS.replace('","', '"\t"'), "utf-8"),
        ("no_mark.csv", "label,text\n2,Stocks fall Wall St.\n1,Cup final Goal\n", "utf-16-le"),
        ("no_mark_be.csv", "label,text\n2,Stocks fall Wall St.\n1,Cup final Goal\n", "utf-16-be"),
    ],
)
def test_layouts_other_tools_write(name, content, encoding, tmp_path):
    """Column names in any case or with spaces, byte-order marks (Excel), UTF-16 (Excel's
    "Unicode text", and without a mark), .json as `datasets` writes it (lines), as an array or
    under one key, blank lines before the header, and a .csv separated by what its header is
    (Excel writes semicolons where the comma is the decimal mark)."""
    path = tmp_path / name
    path.write_text(content, encoding=encoding)
    df = load_examples(path, LABELS, need_labels=True)
    assert df["text"].tolist() == TEXTS and df["label"].tolist() == IDS


def test_folders_a_dataset_was_saved_to(tmp_path):
    """`datasets`' save_to_disk folder, a folder of Parquet shards (read in name order), and
    what is neither."""
    from datasets import Dataset, DatasetDict

    rows = Dataset.from_dict({"text": TEXTS, "label": IDS})
    rows.save_to_disk(tmp_path / "saved")
    (tmp_path / "shards").mkdir()
    for i in (0, 1):
        rows.select([i]).to_parquet(tmp_path / "shards" / f"train-0000{i}-of-00002.parquet")
    for folder in ("saved", "shards"):
        df = load_examples(tmp_path / folder, LABELS, need_labels=True)
        assert df["text"].tolist() == TEXTS and df["label"].tolist() == IDS, folder
    DatasetDict({"train": rows, "test": rows}).save_to_disk(tmp_path / "splits")
    with pytest.raises(NewsloraError, match=r"splits \['test', 'train'\]; give one split's"):
        read_table(tmp_path / "splits")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NewsloraError, match="empty: is a folder, expected a data file"):
        read_table(tmp_path / "empty")


def test_a_class_label_column_is_read_by_its_names(tmp_path):
    """A ClassLabel column (AG News on the Hub, a saved or pickled Dataset) carries its class
    names: they are matched to data.labels by name, and with data.labels left at AG News'
    four a dataset in other classes is read in its own, in the ClassLabel's order (so ids stay
    the dataset's); data.labels set to other names reads the ids by position, as before."""
    from datasets import ClassLabel, Dataset, Features, Value

    def saved(names, ids, folder):
        features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
        texts = [f"t{i}" for i in range(len(ids))]
        Dataset.from_dict({"text": texts, "label": ids}, features=features).save_to_disk(folder)
        return folder

    shuffled = saved(["Sci/Tech", "World", "Business", "Sports"], [0, 1, 2, 3], tmp_path / "ag")
    assert load_with_config(DataConfig(), shuffled)["label"].tolist() == [3, 0, 2, 1]
    emotions = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    emotion = saved(emotions, [5, 0, 1, 2, 3, 4], tmp_path / "emotion")
    df = load_with_config(DataConfig(), emotion, own_labels=True)
    assert df.attrs["labels"] == emotions and df["label"].tolist() == [5, 0, 1, 2, 3, 4]
    with pytest.raises(NewsloraError, match="= 'surprise' is not a valid label"):
        load_with_config(DataConfig(), emotion)  # evaluate, with an AG run: names, not ids
    df = load_with_config(DataConfig(labels=list("abcdef")), emotion)
    assert df["label"].tolist() == [5, 0, 1, 2, 3, 4]


def test_a_headerless_text_with_a_semicolon_is_not_split(tmp_path):
    """Only a header whose next row splits the same way sets the separator."""
    path = tmp_path / "texts.csv"
    path.write_text("Stocks fall; bonds rise\nThe striker scored\n")
    with pytest.raises(NewsloraError, match="texts without a header"):
        load_examples(path, LABELS, need_labels=False, for_prediction=True)


def test_a_zip_holding_one_data_file_reads_as_that_file(tmp_path):
    """Kaggle ships `train.csv.zip`; macOS adds `__MACOSX/` copies. Any format inside."""
    frame = pd.DataFrame({"text": TEXTS, "label": IDS})
    parquet = tmp_path / "rows.parquet"
    frame.to_parquet(parquet)
    archives = {
        "train.csv.zip": {"train.csv": frame.to_csv(index=False)},
        "mac.zip": {"train.csv": frame.to_csv(index=False), "__MACOSX/._train.csv": "x"},
        "rows.zip": {"data/rows.parquet": parquet.read_bytes()},
        "lines.zip": {"rows.jsonl": frame.to_json(orient="records", lines=True)},
    }
    for name, members in archives.items():
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            for member, content in members.items():
                archive.writestr(member, content)
        df = load_examples(tmp_path / name, LABELS, need_labels=True)
        assert df["text"].tolist() == TEXTS and df["label"].tolist() == IDS, name


WRITTEN = ["a.csv", "a.tsv", "a.parquet", "a.jsonl", "a.json", "a.csv.gz", "a.tsv.xz", "a.csv.zip"]


@pytest.mark.parametrize("name", WRITTEN)
def test_what_newslora_writes_it_reads_back(name, tmp_path):
    """predict and augment write the format their output's name says (tables.write_to)."""
    frame = pd.DataFrame({"text": ['Stocks fall, "again"', "Cup final\tGoal"], "label": [2, 1]})
    write_to(frame, tmp_path / "temporary", name)
    (tmp_path / "temporary").rename(tmp_path / name)
    df = load_examples(tmp_path / name, LABELS, need_labels=True, clean=False)
    assert df["text"].tolist() == frame["text"].tolist() and df["label"].tolist() == [2, 1]
    if name.endswith(".zip"):
        assert zipfile.ZipFile(tmp_path / name).namelist() == ["a.csv"]


def test_txt_is_one_text_per_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("label,text\n\nStocks fall\n")  # no header: the first line is a text
    df = load_examples(path, LABELS, need_labels=False, for_prediction=True)
    assert df["text"].tolist() == ["label,text", "", "Stocks fall"]
    assert df["id"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("name", ["rows.csv.gz", "rows.tsv.bz2", "rows.jsonl.xz"])
def test_compressed_files_read_as_their_inner_kind(name, tmp_path):
    frame = pd.DataFrame({"text": ["Stocks fall", "Cup final"], "label": ["Business", "Sports"]})
    path = tmp_path / name
    if ".jsonl" in name:
        frame.to_json(path, orient="records", lines=True)  # compression from the name
    else:
        frame.to_csv(path, sep="\t" if ".tsv" in name else ",", index=False)
    df = load_examples(path, LABELS, need_labels=True)
    assert df["text"].tolist() == ["Stocks fall", "Cup final"] and df["label"].tolist() == [2, 1]


def test_split_is_stratified_seeded_and_disjoint(pool):
    df = load_examples(DATA / "agnews" / "train_pool.csv", LABELS, need_labels=True)
    cfg = DataConfig(max_train_rows=2000, val_rows=200, seed=1)
    train, val = split_train_val(df, cfg)
    assert (len(train), len(val)) == (1800, 200)
    assert set(val["label"].value_counts()) <= {49, 50, 51, 52, 53}  # ~50 per class
    assert not set(train["text"]) & set(val["text"])
    again, _ = split_train_val(df, cfg)
    assert again["text"].tolist() == train["text"].tolist()


def test_split_keeps_a_one_row_class_in_training_and_names_absent_ones(capsys):
    """Another source's labels: a class with one row cannot be stratified, one with none is
    never trained; both are said, and the run goes on. A split that cannot be cut names its
    setting."""
    df = pd.DataFrame(
        {"text": [f"news {i}" for i in range(41)], "label": [0] * 20 + [1] * 20 + [2]}
    )
    cfg = DataConfig(train="other.csv", val_rows=10)
    train, val = split_train_val(df, cfg)
    assert (len(train), len(val)) == (31, 10) and 2 in set(train["label"])
    assert set(val["label"]) == {0, 1}
    err = capsys.readouterr().err
    assert "other.csv: one row only for class(es) ['Business']: kept in training" in err
    assert "no rows for class(es) ['Sci/Tech'] of data.labels: never trained" in err
    with pytest.raises(NewsloraError, match=r"other.csv: .* of 41 rows by data.val_rows = 1"):
        split_train_val(df, DataConfig(train="other.csv", val_rows=1))
    with pytest.raises(NewsloraError, match="other.csv: 2 row.s., none of a class with two"):
        split_train_val(df.iloc[19:21], DataConfig(train="other.csv"))


def test_competition_style_pickled_dataset(tmp_path):
    """The competition ships its unlabelled set as a pickled `datasets.Dataset`."""
    import datasets

    texts = pd.read_csv(DATA / "competition" / "test_unlabelled.csv")["text"].head(50).tolist()
    with open(tmp_path / "test_unlabelled.pkl", "wb") as f:
        pickle.dump(datasets.Dataset.from_dict({"text": texts}), f)
    df = load_examples(
        tmp_path / "test_unlabelled.pkl", LABELS, need_labels=False, allow_pickle=True
    )
    assert df["text"].tolist() == [clean_text(t) for t in texts]
    assert df["id"].tolist() == list(range(50))
