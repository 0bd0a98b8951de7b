"""The competition scorer: the 4,000 competition texts that are AG test rows, matched exactly."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import DATA, REPO
from test_benchmark_table import _benchmark


@pytest.fixture(scope="module")
def competition():
    return _benchmark("competition")


def test_finds_the_4000_ag_test_texts(competition):
    truth = competition.ag_test_labels()
    assert len(truth) == 4000
    assert sorted(set(truth.values())) == [0, 1, 2, 3]


def test_the_other_half_holds_no_test_text(competition):
    """What pseudo_competition.py labels: the 4,000 texts left, none a test text even under the
    leak guard's own normalisation (letters and digits), which training would drop anyway."""
    from newslora.splits import normalise

    other = competition.non_test_texts()
    test = pd.read_csv(DATA / "agnews" / "test.csv", header=None, dtype=str, keep_default_na=False)
    held_out = set((test[1] + " " + test[2]).map(normalise))
    assert len(other) == 4000
    assert not set(other.map(normalise)) & held_out


def test_scores_seed000s_published_submissions_as_reported(competition, tmp_path):
    truth = competition.ag_test_labels()
    assert competition.score(competition.SEED000["seed 000, submission A"], truth)[0] == (
        pytest.approx(93.475, abs=0.005)
    )
    assert competition.score(competition.SEED000["seed 000, submission B"], truth)[0] == (
        pytest.approx(93.90, abs=0.005)
    )
    perfect = tmp_path / "perfect.csv"
    ids = range(8000)
    perfect.write_text("ID,Label\n" + "".join(f"{i},{truth.get(i, 0)}\n" for i in ids))
    assert competition.score(perfect, truth) == (100.0, 4000)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("ID,Label\n" + "".join(f"{i},{(truth.get(i, 0) + 1) % 4}\n" for i in ids))
    assert competition.score(wrong, truth)[0] == 0.0


def test_a_short_submission_is_refused_in_one_line(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("ID,Label\n0,1\n1,2\n")
    proc = _score_cli(short)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"{short}: no label for ID")
    assert "Traceback" not in proc.stderr


def _score_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "benchmarks/competition.py", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    "text, error",
    [
        (None, "file not found"),
        ("", "not a CSV file"),
        ("id,label\n0,1\n", "header must be ID,Label"),
        ("ID,Label\n0,1\nx,2\n", "row 3: ID 'x' is not a whole number"),
        ("ID,Label\n0,1\n1,Politics\n", "row 3: Label 'Politics' is not 0-3 or an AG News class"),
        ("ID,Label\n0,1\n1,4\n", "row 3: Label '4' is not 0-3"),
        ("ID,Label\n0,1\n0,2\n", "row 3: ID 0 appears twice"),
    ],
)
def test_a_bad_submission_is_refused_in_one_line(tmp_path, text, error):
    path = tmp_path / "submission.csv"
    if text is not None:
        path.write_text(text)
    proc = _score_cli(path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0]
    assert proc.stderr.startswith(f"{path}: ") and error in proc.stderr, proc.stderr


def test_class_names_score_as_their_ids(competition, tmp_path):
    """What `newslora predict --label-names` writes scores as the same ids would."""
    truth = competition.ag_test_labels()
    names = ["World", "sports", "Business", "Sci/Tech"]
    path = tmp_path / "names.csv"
    path.write_text("ID,Label\n" + "".join(f"{i},{names[truth.get(i, 0)]}\n" for i in range(8000)))
    assert competition.score(path, truth) == (100.0, 4000)


def test_a_missing_data_folder_is_named(tmp_path):
    env = {**os.environ, "NEWSLORA_DATA": str(tmp_path / "nowhere")}
    proc = _score_cli(REPO / "benchmarks" / "seed000" / "submission_a.csv", env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"{tmp_path / 'nowhere' / 'agnews' / 'test.csv'}: not found; "
        "set NEWSLORA_DATA to the shared data folder"
    )
