"""Training rows never contain a validation or test text, nor duplicates, whatever the source."""

import pandas as pd
import pytest

from newslora import NewsloraError
from newslora.config import DataConfig
from newslora.splits import held_out_texts, normalise, training_rows


def _rows(texts, label=0):
    return pd.DataFrame({"text": texts, "label": label})


def test_duplicates_and_leaks_are_dropped_from_every_source(tmp_path):
    val = _rows(["Oil prices rise", "Cup final tonight"])
    train = _rows(["Stocks fall", "stocks FALL!", "oil prices rise.", "New chip"])
    # a mixed file without `origin` (e.g. `augment clean` output): a validation row, a test
    # row, a training row and a new one
    mixed = tmp_path / "cleaned.csv"
    _rows(["Cup final, tonight", "Mars rover lands", "New chip", "Bank merger"], 1).to_csv(
        mixed, index=False
    )
    cfg = DataConfig(train="train.csv", mix=[{"path": str(mixed), "weight": 2.0}])
    rows, record = training_rows(train, val, cfg, test_texts={normalise("Mars rover lands")})
    assert sorted(rows["text"]) == ["Bank merger", "Bank merger", "New chip", "Stocks fall"]
    real, extra = record
    assert real["dropped"] == {
        "validation_derived": 0,
        "validation_text": 1,  # "oil prices rise." is the validation row "Oil prices rise"
        "test_text": 0,
        "duplicate": 1,  # "stocks FALL!"
    }
    assert extra["dropped"] == {
        "validation_derived": 0,
        "validation_text": 1,
        "test_text": 1,
        "duplicate": 1,  # "New chip" is already a training row
    }
    assert extra["rows_added"] == 2  # weight 2: the one new row, twice


def test_rows_derived_from_validation_are_dropped(tmp_path):
    val = _rows(["Oil prices rise"])
    syn = tmp_path / "syn.csv"
    pd.DataFrame(
        {
            "text": ["Petroleum prices climb", "Equities drop"],
            "label": 2,
            "source": "synonym",
            "origin": ["Oil prices rise", "Stocks fall"],
        }
    ).to_csv(syn, index=False)
    cfg = DataConfig(train="train.csv", mix=[str(syn)])
    rows, record = training_rows(_rows(["Stocks fall"]), val, cfg)
    assert rows["text"].tolist() == ["Stocks fall", "Equities drop"]
    assert record[1]["dropped"]["validation_derived"] == 1


def test_augment_output_mixes_into_a_run_whose_columns_are_named_otherwise(tmp_path):
    """`newslora augment` writes `text,label`; a config naming another source's columns
    (data.text_columns, data.label_column) still reads it, and still refuses a partial match."""
    syn = tmp_path / "syn.csv"
    pd.DataFrame({"text": ["Equities drop"], "label": "Business", "source": "synonym"}).to_csv(
        syn, index=False
    )
    named = dict(text_columns=["headline", "body"], label_column="topic", mix=[str(syn)])
    rows, _ = training_rows(_rows(["Stocks fall"]), _rows([]), DataConfig(**named))
    assert rows[["text", "label", "source"]].values.tolist()[1] == ["Equities drop", 2, "synonym"]
    pd.DataFrame({"headline": ["Oil up"], "text": ["x"], "label": 0}).to_csv(syn, index=False)
    with pytest.raises(NewsloraError, match="missing column 'body'"):
        training_rows(_rows(["Stocks fall"]), _rows([]), DataConfig(**named))


def test_nothing_left_is_an_error():
    val = _rows(["Oil prices rise"])
    with pytest.raises(NewsloraError, match="no training rows left"):
        training_rows(_rows(["oil prices rise"]), val, DataConfig(train="t.csv"))


def test_test_texts_are_read_whatever_their_labels(tmp_path):
    """The leak guard needs the test file's texts only: a test file labelled in classes the
    run does not have is still read, not skipped with a warning."""
    test = tmp_path / "test.csv"
    labels = ["space", "sport"]
    pd.DataFrame({"text": ["Mars rover lands", "Cup final"], "label": labels}).to_csv(test)
    texts, why = held_out_texts(DataConfig(test=str(test)))
    assert why is None and texts == {normalise("Mars rover lands"), normalise("Cup final")}
