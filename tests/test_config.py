import tomllib

import pytest
import tomli_w

from newslora import NewsloraError
from newslora.config import config_help, load_config, parse_override, save_config


def test_file_then_overrides_win(write_config):
    path = write_config('[lora]\nr = 4\ntargets = ["query"]\n[train]\nlr = 1e-4\n')
    cfg = load_config(path, ["lora.r=16", "train.lr=3e-4", "lora.targets=query,value"])
    assert cfg.lora.r == 16
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.lora.targets == ["query", "value"]
    assert cfg.model.name == "FacebookAI/roberta-base"  # untouched default


def test_int_is_accepted_for_float_and_strings_need_no_quotes():
    cfg = load_config(None, ["lora.alpha=32", "model.name=some/encoder"])
    assert cfg.lora.alpha == 32.0 and isinstance(cfg.lora.alpha, float)
    assert cfg.model.name == "some/encoder"
    dropout = load_config(None, ["model.dropout=0"]).model.dropout  # float | str: 0 -> 0.0
    assert dropout == 0.0 and isinstance(dropout, float)
    for text in ("query,value", "[query, value]", '["query", "value"]', "['query', value]"):
        assert load_config(None, [f"lora.targets={text}"]).lora.targets == ["query", "value"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("lora.rank=4", "unknown key 'lora.rank'"),
        ("optim.lr=1", "unknown section 'optim'"),
        ("lora.r=four", "'lora.r' must be a positive integer or"),
        ("lora.dropout=high", "'lora.dropout' must be float"),
        ("lora.bias=some", "'lora.bias' must be one of"),
        ("model.dropout=1.5", "'model.dropout' must be in .0, 1. or"),
        ("model.dropout=some", "'model.dropout' must be in .0, 1. or"),
        ("train.loader_workers=-2", "'train.loader_workers' must be >= 0, or -1"),
        ("train.batch_size=0", "'train.batch_size' must be > 0"),
        ("train.lr=-1e-4", "'train.lr' must be > 0"),
        ("model.max_length=0", "'model.max_length' must be > 0"),
        ("data.val_rows=-5", "'data.val_rows' must be >= 0"),
        ("train.warmup_ratio=1.5", "'train.warmup_ratio' must be in .0, 1."),
        ("train.epochs=0", "'train.epochs' must be > 0 .or train.max_steps set."),
        ('data.labels=["World", " world"]', "'data.labels' needs two or more distinct names"),
        ("data.labels=[1, 2]", "'data.labels' needs two or more distinct names"),
        ('data.labels=["World", ""]', "'data.labels' needs two or more distinct names"),
        ("data.text_columns=[1]", "'data.text_columns' must be column names"),
        ("no_equals", "expected section.key=value"),
    ],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(NewsloraError, match=message):
        load_config(None, [override])


def test_bad_file_is_named(write_config, tmp_path):
    with pytest.raises(NewsloraError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(NewsloraError, match="invalid TOML"):
        load_config(write_config("[lora\nr = 1"))


def test_env_vars_expand_with_defaults(monkeypatch):
    monkeypatch.setenv("NEWSLORA_DATA", "/data/here")
    cfg = load_config(
        None,
        [
            'data.train="${NEWSLORA_DATA:-../x}/train.csv"',
            'data.test="${NOT_SET_ANYWHERE:-../x}/test.csv"',
        ],
    )
    assert cfg.data.train == "/data/here/train.csv"
    assert cfg.data.test == "../x/test.csv"


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["lora.r=3", "lora.layers=[4, 5]", "data.labels=a,b,c"])
    save_config(cfg, tmp_path / "config.toml")
    assert tomllib.loads((tmp_path / "config.toml").read_text())["lora"]["layers"] == [4, 5]
    assert load_config(tmp_path / "config.toml") == cfg


def test_every_field_has_help():
    text = config_help()
    assert "[lora]" in text and "LoRA rank" in text
    assert parse_override("train.epochs=2") == ("train", "epochs", 2)


def test_a_run_saved_before_a_setting_existed_reads_as_trained(tmp_path):
    """Runs saved before model.dropout existed trained with the encoder's own dropout: their
    config reads as "auto", not the new default 0 (the model card prints it). Runs saved before
    train.bf16_base / bf16_trunk trained with fp32 weights: those read false, so that predict
    stores the weights as they trained. Runs saved since keep what they wrote."""
    from newslora.predict import run_config

    (tmp_path / "adapter").mkdir()
    save_config(load_config(None, ["model.dropout=0.0"]), tmp_path / "config.toml")
    cfg = run_config(tmp_path)
    assert (cfg.model.dropout, cfg.train.bf16_base, cfg.train.bf16_trunk) == (0.0, True, True)
    doc = tomllib.loads((tmp_path / "config.toml").read_text())
    del doc["model"]["dropout"], doc["train"]["bf16_base"], doc["train"]["bf16_trunk"]
    (tmp_path / "config.toml").write_text(tomli_w.dumps(doc))
    cfg = run_config(tmp_path)
    assert (cfg.model.dropout, cfg.train.bf16_base, cfg.train.bf16_trunk) == ("auto", False, False)
