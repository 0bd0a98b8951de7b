"""LoRA on an encoder: where each role (query ... ffn_out) sits in each architecture family,
and peft's LoraConfig for a config's roles, layers and head.

Adding an encoder family: add where its roles sit to ROLES, and a tiny model of it built from
a config in the tests (tests/test_budget.py, CONFIGS). A family laid out as one already there
needs no entry (roles_of).
"""

from peft import LoraConfig
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn

from newslora import NewsloraError

# Where each role sits inside one encoder layer, per architecture family: a module-name suffix
# (peft matches `target_modules` entries as suffixes). Roles let one recipe be transposed across
# encoders.
_BERT_LIKE = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}
ROLES = {
    **dict.fromkeys(
        ["bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie"], _BERT_LIKE
    ),
    "mpnet": {
        "query": "attention.attn.q",
        "key": "attention.attn.k",
        "value": "attention.attn.v",
        "attention_output": "attention.attn.o",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
    },
    "deberta-v2": {  # DeBERTa-v3 too
        **_BERT_LIKE,
        "query": "attention.self.query_proj",
        "key": "attention.self.key_proj",
        "value": "attention.self.value_proj",
    },
    # one matrix computes query, key and value together: any of those roles adapts all three
    "modernbert": dict.fromkeys(["query", "key", "value"], "attn.Wqkv")
    | {"attention_output": "attn.Wo", "ffn_in": "mlp.Wi", "ffn_out": "mlp.Wo"},
    "deberta": {**_BERT_LIKE, **dict.fromkeys(["query", "key", "value"], "attention.self.in_proj")},
    "distilbert": {
        "query": "attention.q_lin",
        "key": "attention.k_lin",
        "value": "attention.v_lin",
        "attention_output": "attention.out_lin",
        "ffn_in": "ffn.lin1",
        "ffn_out": "ffn.lin2",
    },
    "albert": {  # one layer's weights, shared by every layer: adapted once, as they are stored
        "query": "attention.query",
        "key": "attention.key",
        "value": "attention.value",
        "attention_output": "attention.dense",
        "ffn_in": "ffn",
        "ffn_out": "ffn_output",
    },
}


def roles_of(model):
    """Where the roles sit in `model`: its family's entry in ROLES, or for a family not there,
    the first entry whose every role names one of its linear layers (Longformer, BigBird,
    RoFormer, MegatronBERT and others are laid out as BERT is); {} if none fits."""
    known = ROLES.get(model.config.model_type)
    if known:
        return known
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for layout in ROLES.values():
        if all(any(_ends_with(n, [path]) for n in names) for path in layout.values()):
            return layout
    return {}


def head_modules(model):
    """Names of the top-level modules outside the encoder that hold parameters (the head)."""
    return [
        name
        for name, module in model.named_children()
        if name != model.base_model_prefix and any(True for _ in module.parameters())
    ]


def _ends_with(path, suffixes):
    return any(path == s or path.endswith("." + s) for s in suffixes)


def lora_config(cfg, model, targets=None):
    """peft's LoraConfig for `lora.targets` (or `targets`) in `lora.layers` (empty = all).

    Roles become module-name suffixes. BERT's ffn_out suffix `output.dense` also ends
    `attention.output.dense`, so a role that was not chosen but whose path a chosen role's
    suffix hits is excluded (unless a plain-name target asks for it)."""
    targets = cfg.lora.targets if targets is None else targets
    roles = roles_of(model)
    suffixes = [roles.get(t, t) for t in targets]
    names = [t for t in targets if t not in roles]
    excluded = [
        path
        for role, path in roles.items()
        if role not in targets
        and path not in suffixes  # a matrix that serves a chosen role too (ModernBERT's Wqkv)
        and _ends_with(path, suffixes)
        and not _ends_with(path, names)
    ]
    return LoraConfig(
        task_type="SEQ_CLS",
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        use_rslora=cfg.lora.rslora,
        target_modules=suffixes,
        exclude_modules=excluded or None,
        # always a layer list: a suffix like `dense` must not reach modules outside the layers
        layers_to_transform=cfg.lora.layers or list(range(model.config.num_hidden_layers)),
        bias=cfg.lora.bias,
        modules_to_save=head_modules(model),
    )


def check_targets(model, cfg):
    """Name the `lora.targets` entry that matches nothing (peft only says that none did)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for target in cfg.lora.targets:
        one = lora_config(cfg, model, [target])
        if not any(check_target_module_exists(one, n) is True for n in names):
            layers = f" in layers {cfg.lora.layers}" if cfg.lora.layers else ""
            raise NewsloraError(
                f"config: 'lora.targets' entry '{target}' matches no linear layer of this "
                f"{model.config.model_type} model{layers} (e.g. {', '.join(names[:4])})"
            )
