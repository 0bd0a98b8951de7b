"""A corpus of malformed files through every input path (train, evaluate, predict, augment),
and run and export folders damaged after training (predict, evaluate, export, plot).

Each bad file must end the command with exit status 2 and one line that names the file (and
the row or field where there is one), no traceback, and an earlier output left intact. The
matrix runs `cli.main` in-process (the same code path as the console script, without paying
for a Python start per case); `test_console_script_*` check the real subprocess boundary.
"""

import gzip
import io
import json
import random
import shutil
import socket
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import DATA, LABELS, copy_run, newslora, tiny_config
from safetensors.torch import load_file, save_file

from newslora.cli import main

EARLIER = "ID,Label\n0,1\n"  # an earlier output that a failed command must not touch


def zipped(members):
    """A .zip archive's bytes, holding `members` (name -> text)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


# name -> (file bytes, text expected in the one-line error)
CORPUS = {
    "empty.csv": (b"", "empty file"),
    "header_only.csv": (b"label,text\n", "no rows"),
    "missing_text.csv": (b"label,body\n1,some news\n", "missing column 'text'"),
    "duplicated_column.csv": (b"label,text,text\n1,a,b\n", "duplicated column 'text'"),
    "unquoted_comma.csv": (b"label,text\n1,Stocks fall, bonds rise\n", "row 1: 3 fields under"),
    "late_comma.csv": (b"label,text\n1,ok\n2,Stocks, bonds\n", "line 3: 3 fields under"),
    "two_files.zip": (zipped({"a.csv": "label,text\n1,a\n", "b.csv": "text\nb\n"}), "holds 2"),
    "not_a_zip.csv.zip": (b"label,text\n1,some news\n", "not a readable zip file"),
    "ragged_quotes.csv": (b'label,text\n1,"never closed\n2,next\n', "cannot read as .csv"),
    "binary.csv": (bytes(random.Random(0).randrange(256) for _ in range(4096)), "binary.csv"),
    "latin1.csv": ("label,text\n1,caf\u00e9 au lait\n".encode("latin-1"), "--encoding"),
    "not_a_pickle.pkl": (b"label,text\n1,plain csv bytes\n", "not a readable pickle"),
    "truncated_json.jsonl": (b'{"label": 1, "text": "ok"}\n{"label": 2, "te', "line 2 is not"),
    "truncated.csv.gz": (gzip.compress(b"label,text\n1,some news\n" * 50)[:40], "cannot read"),
    "truncated_array.json": (b'[{"label": 1, "text": "ok"}, {"label": 2', "not valid JSON ("),
    "bare_texts.csv": (b"Stocks fell\nThe striker scored\n", "texts without a header"),
    "sheet.xlsx": (b"PK\x03\x04\x14\x00\x06\x00" + bytes(64), "a spreadsheet; save it as CSV"),
}
LABEL_CORPUS = {  # files that read fine but whose labels are wrong (train, evaluate, augment)
    "label_out_of_range.csv": (b"label,text\n1,ok\n9,bad\n", "row 2: field 'label' = '9'"),
    "label_negative.csv": (b"label,text\n1,ok\n-1,bad\n", "row 2: field 'label' = '-1'"),
    "label_unknown_name.csv": (b"label,text\nSports,ok\nPolitics,bad\n", "'Politics'"),
    "empty_text.csv": (b'label,text\n1,fine\n2,""\n', "row 2: field 'text' is empty"),
    "nan_label.csv": (b"label,text\n1,ok\n,bad\n", "row 2: field 'label' = ''"),
    "other_classes.csv": (
        b"category,text\ntech,a\npolitics,b\ntech,c\n",
        "the file's classes are ['politics', 'tech']: data.labels=politics,tech reads them",
    ),
    "ids_from_one.csv": (b"label,text\n1,a\n2,b\n3,c\n4,d\n", "ids from 1 are read from"),
    "ids_past_ag.csv": (b"label,text\n0,a\n1,b\n2,c\n3,d\n4,e\n", "data.labels needs 5 names"),
    "ag_and_a_typo.csv": (b"label,text\nSports,a\nWorld,b\nSprots,c\n", "= 'Sprots'"),
    "multi_label.jsonl": (
        b'{"text": "a", "label": [0, 2]}\n{"text": "b", "label": [1]}\n',
        "one class per row: a list of labels (multi-label) is not read",
    ),
    "half_other_names.csv": (
        b"label,text\nSports,a\nWorld News,b\nBusiness,c\nScience and Technology,d\n",
        "names not in data.labels: ['Science and Technology', 'World News']",
    ),
}
OWN_CLASSES = {"other_classes.csv"}  # train reads it in its own classes (test_train.py)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    for name, (content, _) in {**CORPUS, **LABEL_CORPUS}.items():
        (folder / name).write_bytes(content)
    return folder


def _fails(capsys, argv, expect, name):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("newslora: error:"), err
    assert expect in err[0] and name in err[0], err[0]


@pytest.mark.parametrize("name", [*CORPUS, *LABEL_CORPUS])
def test_evaluate(corpus, name, tiny_run, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    out.write_text(EARLIER)
    argv = ["evaluate", tiny_run, "--data", corpus / name, "--out", out, "--allow-pickle"]
    _fails(capsys, argv, {**CORPUS, **LABEL_CORPUS}[name][1], name)
    assert out.read_text() == EARLIER


@pytest.mark.parametrize("name", CORPUS)
def test_predict(corpus, name, tiny_run, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    out.write_text(EARLIER)
    argv = ["predict", tiny_run, corpus / name, out, "--allow-pickle"]
    _fails(capsys, argv, CORPUS[name][1], name)
    assert out.read_text() == EARLIER


@pytest.mark.parametrize("name", [*CORPUS, *(n for n in LABEL_CORPUS if n not in OWN_CLASSES)])
def test_train(corpus, name, tiny_bert, small_train_csv, tmp_path, write_config, capsys):
    run = tmp_path / "run"
    config = write_config(tiny_config(tiny_bert, small_train_csv, run))
    expect = {**CORPUS, **LABEL_CORPUS}[name][1]
    if name.endswith(".pkl"):
        expect = "--allow-pickle"  # train has no --allow-pickle: a pickle is refused outright
    _fails(capsys, ["train", config, f"data.train={corpus / name}"], expect, name)
    assert not run.exists()  # refused before anything was written


@pytest.mark.parametrize("step", ["clean", "synonyms"])
@pytest.mark.parametrize("name", [n for n in CORPUS if not n.endswith(".pkl")])
def test_augment(corpus, name, step, tmp_path, capsys):
    out = tmp_path / "augmented.csv"
    out.write_text(EARLIER)
    _fails(capsys, ["augment", step, corpus / name, out], CORPUS[name][1], name)
    assert out.read_text() == EARLIER


def test_augment_filter_checks_labels(corpus, tiny_run, tmp_path, capsys):
    out = tmp_path / "kept.csv"
    out.write_text(EARLIER)
    argv = ["augment", "filter", corpus / "label_out_of_range.csv", out, "--run", tiny_run]
    _fails(capsys, argv, "row 2: field 'label' = '9'", "label_out_of_range.csv")
    assert out.read_text() == EARLIER


def test_bad_config_missing_file_and_budget(
    tiny_bert, small_train_csv, tmp_path, write_config, capsys
):
    cfg = write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run"))
    _fails(capsys, ["train", cfg, "train.budget=100"], "exceed train.budget 100 by 1,056", "")
    _fails(capsys, ["train", cfg, "lora.rank=4"], "unknown key 'lora.rank'", "")
    missing = tmp_path / "missing.csv"
    _fails(capsys, ["train", cfg, f"data.train={missing}"], "file not found", "missing.csv")
    out = tmp_path / "p.csv"
    _fails(capsys, ["predict", tmp_path, missing, out], "not a finished newslora run", "")
    assert not (tmp_path / "run").exists() and not out.exists()
    (tmp_path / "a-file").write_text("not a folder")  # before any weights load
    place = f"train.output_dir={tmp_path / 'a-file' / 'run'}"
    _fails(capsys, ["train", cfg, place], "cannot write there (Not a directory)", "a-file")
    _fails(capsys, ["train", cfg, "model.max_length=100000"], "reads 512 tokens at most", "")


def test_missing_model_and_run(tiny_bert, small_train_csv, tmp_path, write_config, capsys):
    config = write_config(tiny_config(tiny_bert, small_train_csv, tmp_path / "run"))
    _fails(capsys, ["train", config, f"model.name={tmp_path / 'no-model'}"], "not", "no-model")
    out = tmp_path / "p.csv"
    _fails(capsys, ["predict", tmp_path / "no-run", small_train_csv, out], "not a finished", "")
    assert not out.exists()
    # a config and tokenizer without weights (a download cut short): transformers' OSError
    weights = shutil.ignore_patterns("*.safetensors")
    bare = shutil.copytree(tiny_bert, tmp_path / "bare", ignore=weights)
    _fails(capsys, ["train", config, f"model.name={bare}"], "cannot load its weights", "bare")


def test_predict_names_rows_with_a_missing_or_repeated_id(tiny_run, tmp_path, capsys):
    path = tmp_path / "ids.csv"
    path.write_text("id,text\n7,Stocks fall\n,Cup final\n7,New chip\n8,Rain\n8,Oil\n")
    out = tmp_path / "submission.csv"
    main(["predict", str(tiny_run), str(path), str(out)])
    err = capsys.readouterr().err
    assert "1 row(s) with no ID (rows 2)" in err
    assert "4 row(s) share an ID (rows 1, 3, 4, 5)" in err
    assert pd.read_csv(out, keep_default_na=False)["ID"].astype(str).tolist() == [
        "7", "", "7", "8", "8"
    ]  # fmt: skip


def test_predict_keeps_every_row(tiny_run, tmp_path, capsys):
    """Empty texts and placeholder labels still get a prediction; an `ID` column is used."""
    path = tmp_path / "unlabelled.csv"
    pd.DataFrame(
        {"ID": [101, 102, 103, 104], "text": ["Stocks fall", "", "Cup final", "  "], "label": -1}
    ).to_csv(path, index=False)
    out = tmp_path / "submission.csv"
    main(["predict", str(tiny_run), str(path), str(out)])
    captured = capsys.readouterr()
    assert "2 row(s) with empty text (rows 2, 4)" in captured.err
    assert "IDs from column 'ID'" in captured.out
    table = pd.read_csv(out)
    assert table["ID"].tolist() == [101, 102, 103, 104]
    assert table["Label"].between(0, 3).all()


def test_encoding_option_reads_latin1(corpus, tiny_run, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    main(["predict", str(tiny_run), str(corpus / "latin1.csv"), str(out), "--encoding", "latin-1"])
    assert pd.read_csv(out)["ID"].tolist() == [0]
    metrics = tmp_path / "metrics.json"
    argv = ["evaluate", tiny_run, "--data", corpus / "latin1.csv", "--out", metrics]
    main([*map(str, argv), "--encoding", "latin-1"])
    assert json.loads(metrics.read_text())["rows"] == 1


def test_a_file_laid_out_otherwise_is_named_by_flags(tiny_run, tmp_path, capsys):
    """Another source's columns: the error says how to name them; the flags then read it."""
    path = tmp_path / "other-source.csv"
    pd.DataFrame(
        {
            "topic": ["Sports", "World", "Sci/Tech"],
            "headline": ["Cup final tonight", "Talks resume", "New chip"],
            "story": ["The striker scored.", "Envoys met again.", "It is faster."],
        }
    ).to_csv(path, index=False)
    metrics = tmp_path / "metrics.json"
    evaluate = ["evaluate", tiny_run, "--data", path, "--out", metrics]
    _fails(capsys, evaluate, "has: ['topic', 'headline', 'story']; name the text columns", "")
    _fails(capsys, [*evaluate, "--text-columns", "headline,story"], "--label-column", "")
    main([*map(str, evaluate), "--text-columns", "headline, story", "--label-column", "topic"])
    assert json.loads(metrics.read_text())["rows"] == 3
    capsys.readouterr()  # evaluate's progress bar
    out = tmp_path / "submission.csv"
    _fails(capsys, ["predict", tiny_run, path, out], "--text-columns", "other-source.csv")
    predict = [*map(str, ["predict", tiny_run, path, out]), "--text-columns", "story"]
    main(predict)
    ids = pd.read_csv(out)
    assert ids["ID"].tolist() == [0, 1, 2] and ids["Label"].between(0, 3).all()
    main([*predict, "--label-names"])
    names = pd.read_csv(out)["Label"]
    assert names.tolist() == [LABELS[i] for i in ids["Label"]]


def test_an_output_that_cannot_be_written_is_one_line(tiny_run, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "submission.csv"
    texts = DATA / "competition" / "test_unlabelled.csv"
    _fails(capsys, ["predict", tiny_run, texts, out], "cannot write there", "a-file")


def test_an_output_never_replaces_its_input_or_a_folder(tiny_run, tmp_path, capsys):
    """`predict in.csv in.csv` would swap the texts for labels, and a folder given for a file
    would be replaced whole (a file for an export's folder: export's own check). Each stops
    before any work."""
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nStocks fall\n")
    _fails(capsys, ["predict", tiny_run, texts, texts], "is the input file too", "texts.csv")
    _fails(capsys, ["augment", "clean", texts, texts], "is the input file too", "texts.csv")
    assert texts.read_text() == "text\nStocks fall\n"
    _fails(capsys, ["predict", tiny_run, texts, tmp_path], "exists and is not a file", "")
    out = tmp_path / "export.csv"
    out.write_text(EARLIER)
    argv = ["export", tiny_run, out, "--format", "hf"]
    _fails(capsys, argv, "exists and is not a newslora export", "export.csv")
    assert out.read_text() == EARLIER


def test_serve_on_a_taken_port_is_one_line(tiny_run, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:  # listening: the port is in use
        port = taken.getsockname()[1]
        argv = ["serve", tiny_run, "--port", port]
        _fails(capsys, argv, f"127.0.0.1:{port}: cannot listen there (Address already in use)", "")


def test_huge_cell_is_read_not_refused(tiny_run, tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("text\n" + "word " * 400_000 + "\nshort one\n")  # a 2 MB cell
    out = tmp_path / "submission.csv"
    newslora("predict", tiny_run, path, out)
    assert pd.read_csv(out)["ID"].tolist() == [0, 1]


def test_console_script_bad_input_is_one_line(corpus, tiny_run, tmp_path):
    out = tmp_path / "submission.csv"
    out.write_text(EARLIER)
    proc = newslora("predict", tiny_run, corpus / "duplicated_column.csv", out, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    path = corpus / "duplicated_column.csv"
    assert proc.stderr.strip() == f"newslora: error: {path}: duplicated column 'text' in the header"
    assert out.read_text() == EARLIER


def _cut_short(path):
    path.write_bytes(path.read_bytes()[:200])


def _other_rank(path):
    """Same weight names, one LoRA matrix of another rank: weights swapped in from another run."""
    weights = load_file(path)
    name = next(k for k in weights if "lora_A" in k)
    weights[name] = weights[name][:1].contiguous()
    save_file(weights, path)


def _one_weight_less(path):
    """peft loads such a file with a warning, the weight left at its init (lora_B: zero)."""
    weights = load_file(path)
    del weights[next(k for k in weights if "lora_B" in k)]
    save_file(weights, path)


WEIGHTS, CONFIG, TOKENIZER = "adapter_model.safetensors", "adapter_config.json", "tokenizer.json"
DAMAGE = {  # name -> (file in the run's adapter/, what is done to it, text of the one-line error)
    "weights cut short": (WEIGHTS, _cut_short, "damaged saved files (Error while deserializing"),
    "weights gone": (WEIGHTS, Path.unlink, f"{WEIGHTS}: missing, the run is incomplete"),
    "weights of another rank": (WEIGHTS, _other_rank, "damaged saved files (size mismatch for"),
    "a weight missing": (WEIGHTS, _one_weight_less, f"{WEIGHTS}: lacks 1 of the run's weights"),
    "adapter config cut short": (CONFIG, _cut_short, "damaged saved files ("),
    "tokenizer cut short": (TOKENIZER, _cut_short, "damaged saved files ("),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_a_damaged_run_is_one_line(damage, command, tiny_run, tmp_path, capsys):
    """A run folder cut short by a full disk, edited by hand or given another run's weights."""
    run = copy_run(tiny_run, tmp_path)
    name, harm, expect = DAMAGE[damage]
    harm(run / "adapter" / name)
    rows, out = tmp_path / "rows.csv", tmp_path / "out.csv"
    rows.write_text("label,text\n3,Stocks fell on Wall Street\n")
    out.write_text(EARLIER)
    argv = {
        "predict": ["predict", run, rows, out],
        "evaluate": ["evaluate", run, "--data", rows],
        "export": ["export", run, tmp_path / "export", "--format", "hf"],
    }[command]
    _fails(capsys, argv, expect, str(run))
    assert out.read_text() == EARLIER and not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    "name, command, expect",
    [
        ("history.json", "plot", "history.json: damaged, not valid JSON"),
        ("train_summary.json", "export", "train_summary.json: damaged, not valid JSON"),
        ("metrics.json", "plot", "metrics.json: damaged, not valid JSON"),
    ],
)
def test_a_damaged_run_record_is_named(name, command, expect, tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    (run / name).write_bytes(b'[{"step": 1, "loss": 0.5')
    argv = [command, run, *([tmp_path / "export", "--format", "hf"] if command == "export" else [])]
    _fails(capsys, argv, expect, str(run / name))


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_damaged_export_is_one_line(name, tiny_run, tmp_path, capsys):
    """An `hf` export is read by predict and serve as a run is: a damaged file, one line."""
    export = tmp_path / "export"
    main(["export", str(tiny_run), str(export), "--format", "hf"])
    capsys.readouterr()
    _cut_short(export / name)
    rows = tmp_path / "rows.csv"
    rows.write_text("text\nStocks fell on Wall Street\n")
    _fails(capsys, ["predict", export, rows, tmp_path / "out.csv"], "damaged", str(export))
