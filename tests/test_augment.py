"""Augmentation steps with real WordNet lookups, and mixing their output into training."""

import json

import pandas as pd
import pytest
from conftest import newslora, tiny_config

from newslora.augment import SynonymConfig
from newslora.augment.synonyms import SynonymAugmenter, load_wordnet
from newslora.data import clean_text


@pytest.fixture(scope="module")
def wordnet():
    return load_wordnet()


def test_real_wordnet_lookups(wordnet):
    assert wordnet.get_version() == "3.0"
    augmenter = SynonymAugmenter(wordnet=wordnet)
    assert "ascent" in augmenter.synonyms("rise")
    assert "company" not in augmenter.synonyms("company")  # never the word itself
    assert augmenter.synonyms("xqzzv") == []


TEXT = "Oil prices rose sharply on Tuesday as OPEC said supply would fall by 2 million barrels."


def test_replacement_respects_rate_limits_and_protected_words(wordnet):
    augmenter = SynonymAugmenter(SynonymConfig(rate=1.0, max_replacements=3), wordnet=wordnet)
    before, after = TEXT.split(), augmenter.augment(TEXT).split()
    assert len(before) == len(after) or any(" " in s for s in after)
    changed = [(b, a) for b, a in zip(before, after, strict=False) if b != a]
    assert 1 <= len(changed) <= 3
    for kept in ("Oil", "Tuesday", "OPEC", "2", "on", "by", "as"):  # names, numbers, stopwords
        assert kept in after


def test_seeded_and_row_dependent(wordnet):
    cfg = SynonymConfig(rate=0.5, max_replacements=5, seed=7)
    a, b = SynonymAugmenter(cfg, wordnet=wordnet), SynonymAugmenter(cfg, wordnet=wordnet)
    assert a.augment(TEXT, row=3) == b.augment(TEXT, row=3)
    outputs = {a.augment(TEXT, row=r) for r in range(10)}
    assert len(outputs) > 1  # different rows get different edits


def test_eda_insert_swap_delete(wordnet):
    n = len(TEXT.split())
    insert = SynonymAugmenter(SynonymConfig(rate=0, insert_rate=0.5), wordnet=wordnet)
    assert len(insert.augment(TEXT).split()) > n
    swap = SynonymAugmenter(SynonymConfig(rate=0, swap_rate=0.2), wordnet=wordnet)
    swapped = swap.augment(TEXT).split()
    assert sorted(swapped) == sorted(TEXT.split()) and swapped != TEXT.split()
    delete = SynonymAugmenter(SynonymConfig(rate=0, delete_rate=0.5), wordnet=wordnet)
    assert 1 <= len(delete.augment(TEXT).split()) < n


def test_synonym_settings_from_flags_config_file_or_overrides_agree(tmp_path, pool):
    """One config system: [synonyms] in a TOML file, synonyms.key=value and the flags built
    from the same dataclass fields give the same rows; a flag beats the file."""
    source = tmp_path / "in.csv"
    pool.head(20).to_csv(source, index=False)
    (tmp_path / "syn.toml").write_text("[synonyms]\nrate = 0.3\nseed = 2\ncopies = 2\n")
    runs = {
        "flags": ["--rate", "0.3", "--seed", "2", "--copies", "2"],
        "file": ["--config", tmp_path / "syn.toml"],
        "overrides": ["synonyms.rate=0.3", "synonyms.seed=2", "--copies", "2"],
        "flag_wins": ["--config", tmp_path / "syn.toml", "--copies", "1", "--keep-original"],
    }
    tables = {}
    for name, args in runs.items():
        newslora("augment", "synonyms", source, tmp_path / f"{name}.csv", *args)
        tables[name] = pd.read_csv(tmp_path / f"{name}.csv")
    flags = tables["flags"]
    assert len(flags) == 40 and (flags["text"] != flags["origin"]).any()
    pd.testing.assert_frame_equal(tables["flags"], tables["file"])
    pd.testing.assert_frame_equal(tables["flags"], tables["overrides"])
    assert tables["flag_wins"]["source"].value_counts().to_dict() == {"real": 20, "synonym": 20}
    assert "(default: 0.1)" in newslora("augment", "synonyms", "--help").stdout


def test_clean_step_is_idempotent_and_keeps_labels(tmp_path, pool):
    pool.head(300).to_csv(tmp_path / "raw.csv", index=False)
    newslora("augment", "clean", tmp_path / "raw.csv", tmp_path / "clean.csv")
    once = pd.read_csv(tmp_path / "clean.csv")
    assert (once["source"] == "real").all() and len(once) == 300
    assert once["text"].map(clean_text).tolist() == once["text"].tolist()
    assert once["label"].tolist() == pool.head(300)["label"].astype(int).tolist()


def test_clean_step_keeps_a_files_own_classes_by_name(tmp_path, pool):
    """A file labelled in other classes than data.labels is read in its own (as `train` reads
    it) and written with their names: ids would be read back as AG News' classes."""
    bbc = ["sport", "business", "politics", "tech", "entertainment"]
    raw = pd.DataFrame(
        {"category": [bbc[i % 5] for i in range(20)], "text": pool.head(20)["title"]}
    )
    raw.to_csv(tmp_path / "raw.csv", index=False)
    proc = newslora("augment", "clean", tmp_path / "raw.csv", tmp_path / "clean.csv")
    assert "classes read from the file" in proc.stderr
    assert pd.read_csv(tmp_path / "clean.csv")["label"].tolist() == raw["category"].tolist()


def test_synonym_rows_mix_into_training_without_validation_leaks(
    tiny_bert, small_train_csv, tmp_path, write_config
):
    augmented = tmp_path / "syn.parquet"
    newslora("augment", "synonyms", small_train_csv, augmented, "--rate", "0.2", "--seed", "1")
    table = pd.read_parquet(augmented)
    assert set(table.columns) == {"text", "label", "source", "origin"} and len(table) == 400
    assert (table["text"] != table["origin"]).mean() > 0.9  # nearly every row was changed
    run = tmp_path / "run"
    config = write_config(tiny_config(tiny_bert, small_train_csv, run))
    newslora("train", config, f'data.mix=[{{path="{augmented}", weight=1.0}}]')
    summary = json.loads((run / "train_summary.json").read_text())
    # the 40 validation rows' synonym copies are dropped; the other 360 join the 360 real rows,
    # but for copies the augmenter left unchanged (duplicates of their real row)
    mixed = summary["sources"][1]["dropped"]
    assert mixed["validation_derived"] == 40
    unchanged = int((table["text"] == table["origin"]).sum())
    assert mixed["duplicate"] <= unchanged
    assert summary["rows_by_source"] == {"real": 360, "synonym": 360 - mixed["duplicate"]}
