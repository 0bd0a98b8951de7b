import pytest
from conftest import REPO, newslora
from transformers import (
    AlbertConfig,
    BertConfig,
    BigBirdConfig,
    DebertaConfig,
    DebertaV2Config,
    DistilBertConfig,
    LongformerConfig,
    ModernBertConfig,
    MPNetConfig,
    RobertaConfig,
)

from newslora import NewsloraError
from newslora.budget import check_budget, count_config, count_parameters
from newslora.config import load_config
from newslora.model import build_model


def test_seed_recipes_count_exactly_offline():
    """The seeds' published counts, from the bundled roberta-base architecture (no weights)."""
    out = newslora("budget", REPO / "configs" / "seed000.toml").stdout
    assert "916,996" in out and "fits" in out
    out = newslora("budget", REPO / "configs" / "seed003.toml").stdout
    assert "667,396" in out


def test_budget_counts_the_head_for_the_training_files_own_classes(tmp_path):
    """data.labels left at AG News' four and a local training file in five classes of its
    own: `budget` counts the 5-class head that `train` builds; a Hub dataset is not read."""
    _tiny("bert", tmp_path)
    classes = ["sport", "business", "politics", "tech", "entertainment"]
    (tmp_path / "bbc.csv").write_text("label,text\n" + "".join(f"{c},a\n" for c in classes))
    args = [f"model.name={tmp_path}", "model.head=linear", f"data.train={tmp_path / 'bbc.csv'}"]
    config = REPO / "configs" / "demo.toml"
    out = newslora("budget", config, *args).stdout
    assert f"head       {32 * 5 + 5:>11,}   linear, 5 classes" in out
    out = newslora("budget", config, *args[:2], "data.train=owner/dataset:train").stdout
    assert f"{32 * 4 + 4:>11,}   linear, 4 classes" in out


def test_seed000_breakdown_matches_the_arithmetic():
    count = count_config(load_config(REPO / "configs" / "seed000.toml"))
    assert count.lora == 3 * 12 * 2 * 768 * 4  # q,k,v x 12 layers x (A + B) x r=4
    assert count.head == 768 * 768 + 768 + 768 * 4 + 4  # RoBERTa's dense + out_proj
    assert count.bias == 102_144  # every encoder bias (bias="all")
    assert count.other == 0
    assert count.total_params == 124_648_708 + count.lora  # roberta-base + head, + adapters


def test_linear_head_and_layer_choice(tmp_path):
    cfg = load_config(
        REPO / "configs" / "seed003.toml", ["model.head=linear", "lora.layers=[10, 11]"]
    )
    count = count_config(cfg)
    assert count.head == 768 * 4 + 4
    assert count.lora == 2 * 2 * 2 * 768 * 2  # 2 layers x q,v x (A + B) x r=2


SIZES = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=100,
    max_position_embeddings=64,
)
CONFIGS = {
    "bert": lambda: BertConfig(**SIZES),
    "roberta": lambda: RobertaConfig(**SIZES),
    "mpnet": lambda: MPNetConfig(**SIZES),
    "distilbert": lambda: DistilBertConfig(
        dim=32, n_layers=3, n_heads=2, hidden_dim=64, vocab_size=100, max_position_embeddings=64
    ),
    "deberta": lambda: DebertaConfig(**SIZES),  # DeBERTa v1: one in_proj for q, k and v
    "deberta-v2": lambda: DebertaV2Config(**SIZES),
    "modernbert": lambda: ModernBertConfig(
        **SIZES, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2
    ),
    # no entry in lora.ROLES: laid out as BERT is (lora.roles_of)
    "longformer": lambda: LongformerConfig(**SIZES, attention_window=8),
    "big_bird": lambda: BigBirdConfig(**SIZES),
}
# each role's module in layer 1, as the architecture names it (after peft's prefix)
LAYER_1 = {
    "bert": "bert.encoder.layer.1.",
    "roberta": "roberta.encoder.layer.1.",
    "mpnet": "mpnet.encoder.layer.1.",
    "distilbert": "distilbert.transformer.layer.1.",
    "deberta": "deberta.encoder.layer.1.",
    "deberta-v2": "deberta.encoder.layer.1.",
    "modernbert": "model.layers.1.",
    "longformer": "longformer.encoder.layer.1.",
    "big_bird": "bert.encoder.layer.1.",
}
# the modules outside the encoder that the `linear` head keeps beside its own Linear
KEPT_BY_LINEAR = {
    "distilbert": 32 * 32 + 32,
    "deberta": 32 * 32 + 32,
    "deberta-v2": 32 * 32 + 32,
    "modernbert": 32 * 32 + 32,
}
FFN_OUT = {"distilbert": "ffn.lin2", "modernbert": "mlp.Wo"}


def _tiny(model_type, tmp_path):
    CONFIGS[model_type]().save_pretrained(tmp_path)
    return str(tmp_path)


def _adapted(model):
    """Names of the modules that carry LoRA matrices, without peft's wrapper prefix."""
    return sorted(
        name.removeprefix("base_model.model.").removesuffix(".lora_A")
        for name, _ in model.named_modules()
        if name.endswith(".lora_A")
    )


def _build(name, *overrides):
    return build_model(load_config(None, [f"model.name={name}", *overrides]), pretrained=False)


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_roles_resolve_on_each_architecture(model_type, tmp_path):
    """One recipe, any encoder: roles map to each architecture's own module names."""
    name = _tiny(model_type, tmp_path)
    roles = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]
    model = _build(name, "model.head=linear", "lora.r=2", f"lora.targets={','.join(roles)}")
    per_layer = 4 * 2 * (32 * 2) + 2 * (32 * 2 + 64 * 2)  # 4 attention + 2 FFN matrices
    matrices = 6
    if model_type == "modernbert":  # Wqkv (32 -> 96), Wo, Wi (32 -> 2 x 64, gated), mlp.Wo
        per_layer, matrices = 2 * (32 + 96) + 2 * 64 + 2 * (32 + 128) + 2 * (64 + 32), 4
    if model_type == "deberta":  # in_proj (32 -> 96), attention output, intermediate, output
        per_layer, matrices = 2 * (32 + 96) + 2 * 64 + 2 * (32 + 64) + 2 * (64 + 32), 4
    count = count_parameters(model)
    assert count.lora == 3 * per_layer
    assert count.head == 32 * 4 + 4 + KEPT_BY_LINEAR.get(model_type, 0)
    assert len(_adapted(model)) == 3 * matrices


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_one_role_in_one_layer_adapts_exactly_that_matrix(model_type, tmp_path):
    """ffn_out alone: BERT's `output.dense` must not also take `attention.output.dense`."""
    name = _tiny(model_type, tmp_path)
    model = _build(name, "lora.r=2", "lora.targets=ffn_out", "lora.layers=[1]")
    assert _adapted(model) == [LAYER_1[model_type] + FFN_OUT.get(model_type, "output.dense")]
    model = _build(name, "lora.r=2", "lora.targets=query,value", "lora.layers=[1]")
    fused = model_type in ("modernbert", "deberta")  # one matrix for query, key and value
    assert len(_adapted(model)) == (1 if fused else 2) and all(
        n.startswith(LAYER_1[model_type]) for n in _adapted(model)
    )


def test_albert_adapts_its_one_shared_layer_once(tmp_path):
    """ALBERT runs one stored layer num_hidden_layers times: each role is one matrix, adapted
    once (and counted once); a layer list past that one layer names the entry it misses."""
    AlbertConfig(**SIZES, embedding_size=16).save_pretrained(tmp_path)
    roles = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]
    model = _build(tmp_path, "lora.r=2", f"lora.targets={','.join(roles)}")
    assert count_parameters(model).lora == 4 * 2 * (32 * 2) + 2 * (32 * 2 + 64 * 2)
    layer = "albert.encoder.albert_layer_groups.0.albert_layers.0."
    paths = ["attention.dense", "attention.key", "attention.query", "attention.value"]
    assert _adapted(model) == [layer + p for p in [*paths, "ffn", "ffn_output"]]
    with pytest.raises(NewsloraError, match="'query' matches no linear layer .* in layers"):
        _build(tmp_path, "lora.r=2", "lora.targets=query", "lora.layers=[1]")


def test_plain_names_match_suffixes_inside_the_layers_only(tmp_path):
    """`dense` hits every *.dense in the encoder layers, not BERT's pooler.dense."""
    model = _build(_tiny("bert", tmp_path), "lora.r=2", "lora.targets=dense")
    adapted = _adapted(model)
    assert len(adapted) == 3 * 3 and not any("pooler" in n for n in adapted)


def test_unknown_target_is_named(tmp_path):
    cfg = load_config(None, [f"model.name={_tiny('roberta', tmp_path)}", "lora.targets=qkv"])
    with pytest.raises(NewsloraError, match="'qkv' matches no linear layer"):
        build_model(cfg, pretrained=False)


def test_over_budget_says_by_how_much():
    count = count_config(load_config(REPO / "configs" / "seed000.toml", ["lora.r=64"]))
    with pytest.raises(NewsloraError, match=f"by {count.trainable - 1_000_000:,}"):
        check_budget(count, 1_000_000)
    check_budget(count, 0)  # 0 = no limit


def test_unknown_model_is_a_clear_error(tmp_path):
    cfg = load_config(None, [f"model.name={tmp_path / 'no-such-model'}"])
    with pytest.raises(NewsloraError, match="no-such-model"):
        count_config(cfg)


def test_auto_rank_fills_the_budget_and_plan_spends_it_inside_the_encoder():
    from newslora.budget import plan, resolve_rank

    cfg = resolve_rank(load_config(REPO / "configs" / "newslora.toml"))
    assert cfg.lora.r == 6  # 165,888 per rank on roberta-base's 72 matrices, + 3,076 head
    assert count_config(cfg).trainable == 6 * 165_888 + 3_076 <= 1_000_000
    rows, pick = plan(load_config(REPO / "configs" / "seed000.toml"))
    assert {r["count"].trainable for r in rows if r["r"] >= 1} <= set(range(1_000_001))
    assert rows[pick]["layout"] == "attention+ffn" and rows[pick]["head"] == "linear"
    default_qv = next(r for r in rows if r["layout"] == "q,v" and r["head"] == "default")
    assert default_qv["count"].head == 593_668  # the default head eats most of the budget


def test_auto_rank_that_cannot_fit_says_so():
    from newslora.budget import resolve_rank

    cfg = load_config(
        REPO / "configs" / "newslora.toml", ["model.head=default", "train.budget=500000"]
    )
    with pytest.raises(NewsloraError, match="over budget"):
        resolve_rank(cfg)
