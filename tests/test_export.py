"""`newslora export`: hf, adapter and onnx folders that plain transformers, peft and ONNX Runtime
load without newslora, and that predict what the run predicts."""

import json
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import DATA, minilm_path, save_tiny_encoder, trained_looking_model
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, RobertaConfig

from newslora import NewsloraError
from newslora.cli import main
from newslora.config import load_config, save_config
from newslora.data import load_with_config
from newslora.evaluate import evaluate_run
from newslora.export import export_run
from newslora.model import save_model
from newslora.predict import load_predictor, predict_run, source_config

# Loads the three exports the way their users would, in a process where newslora cannot be
# imported: first each model card's own example, then every test text; writes the labels.
PLAIN_LOAD = r"""
import json, sys
sys.modules["newslora"] = None  # `import newslora` now fails: the exports must not need it
import onnxruntime as ort, pandas as pd, torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

hf, adapter, onnx, texts_csv, out = sys.argv[1:]
for folder in (hf, adapter, onnx):
    card = open(f"{folder}/README.md").read()
    exec(card.split("```python\n")[1].split("```")[0], {})
texts = pd.read_csv(texts_csv, keep_default_na=False)["text"].tolist()
classify = pipeline("text-classification", model=hf)
result = {"hf": [p["label"] for p in classify(texts, batch_size=64, truncation=True)]}

labels = json.load(open(f"{adapter}/newslora_export.json"))["labels"]
base = AutoModelForSequenceClassification.from_pretrained(
    json.load(open(f"{adapter}/adapter_config.json"))["base_model_name_or_path"],
    num_labels=len(labels),
    id2label=dict(enumerate(labels)),
    label2id={n: i for i, n in enumerate(labels)},
)
model = PeftModel.from_pretrained(base, adapter).eval()
tokenizer = AutoTokenizer.from_pretrained(adapter)
session = ort.InferenceSession(f"{onnx}/model.onnx", providers=["CPUExecutionProvider"])
onnx_names = json.load(open(f"{onnx}/config.json"))["id2label"]
result |= {"adapter": [], "onnx": [], "id2label": model.config.id2label}
for i in range(0, len(texts), 64):
    batch = tokenizer(texts[i : i + 64], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ids = model(**batch).logits.argmax(-1).tolist()
    result["adapter"] += [model.config.id2label[k] for k in ids]
    feed = {x.name: batch[x.name].numpy() for x in session.get_inputs()}
    result["onnx"] += [onnx_names[str(k)] for k in session.run(None, feed)[0].argmax(-1)]
json.dump(result, open(out, "w"))
"""


@pytest.fixture(scope="module")
def test_texts(lively_run, tmp_path_factory):
    """The official test split (7,600 rows) as the run reads it, in a `text` column."""
    cfg = source_config(lively_run)
    df = load_with_config(cfg.data, DATA / "agnews" / "test.csv", need_labels=True)
    path = tmp_path_factory.mktemp("texts") / "test_texts.csv"
    df[["text"]].to_csv(path, index=False)
    return path


def test_exports_load_without_newslora_and_predict_like_the_run(
    lively_run, test_texts, tmp_path, capsys
):
    cfg = source_config(lively_run)
    table = predict_run(lively_run, test_texts, tmp_path / "run.csv")  # `newslora predict`
    expected = [cfg.data.labels[i] for i in table["Label"]]
    assert len(expected) == 7600 and len(set(expected)) == 4  # labels vary: the check can fail
    out = {fmt: tmp_path / fmt for fmt in ("hf", "adapter", "onnx")}
    main(["export", str(lively_run), str(out["hf"]), "--format", "hf"])  # the CLI, in-process
    printed = capsys.readouterr().out
    assert f"as hf to {out['hf']}" in printed and "model.safetensors" in printed
    export_run(lively_run, out["adapter"], "adapter")  # in-process: the same code, faster
    export_run(lively_run, out["onnx"], "onnx")

    plain = tmp_path / "plain.json"
    cmd = [sys.executable, "-c", PLAIN_LOAD, *map(str, out.values()), str(test_texts), str(plain)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(plain.read_text())
    assert got["hf"] == expected  # transformers.pipeline on the merged model
    assert got["adapter"] == expected  # plain peft on the base encoder
    assert got["id2label"] == {str(i): n for i, n in enumerate(cfg.data.labels)}
    assert np.mean(np.array(got["onnx"]) == expected) >= 0.999  # plain ONNX Runtime

    table = predict_run(out["onnx"], test_texts, tmp_path / "onnx.csv", backend="onnx")
    onnx_labels = [cfg.data.labels[i] for i in table["Label"]]
    assert np.mean(np.array(onnx_labels) == expected) >= 0.999
    # the adapter alone (what one shares): newslora loads its base by the run's model.name
    table = predict_run(out["adapter"], test_texts, tmp_path / "adapter.csv")
    assert [cfg.data.labels[i] for i in table["Label"]] == expected
    _check_card(out["hf"] / "README.md", lively_run)


def _check_card(card_path, run):
    """The model card holds the run's own figures, and Hub-style front matter."""
    card = card_path.read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert (
        front["library_name"] == "transformers" and front["pipeline_tag"] == "text-classification"
    )
    assert front["datasets"] == ["fancyzhx/ag_news"] and "license" in front
    summary = json.loads((run / "train_summary.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["rows"] == 7600
    assert f"Validation accuracy: **{100 * summary['val_accuracy']:.2f}%**" in card
    assert f"7,600 rows): accuracy **{100 * metrics['accuracy']:.2f}%**" in card
    assert f"macro-F1 **{100 * metrics['macro_f1']:.2f}%**" in card
    for name, c in metrics["per_class"].items():
        assert f"| {name} | {100 * c['precision']:.2f} | {100 * c['recall']:.2f} |" in card
    assert f"| trainable parameters | {summary['trainable_params']:,} of " in card
    assert f"training rows | {summary['train_rows']:,}" in card
    assert "newslora train newslora.toml" in card
    assert f"`newslora predict {card_path.parent} texts.csv out.csv`" in card
    dropout = tomllib.loads((run / "config.toml").read_text())["model"]["dropout"]
    assert f"| encoder dropout while training | {dropout} |" in card  # as the run trained
    text = '| text the model was trained on | `title` + " " + `description` (or a `text` column)'
    assert text in card  # the pool's columns: what a user of the export should pass


def test_int8_export_is_smaller_and_mostly_agrees(lively_run, test_texts, tmp_path):
    meta = export_run(lively_run, tmp_path / "q", "onnx", quantize="int8")
    assert meta["onnx_file"] == "model_quantized.onnx"
    sizes = {f: (tmp_path / "q" / f).stat().st_size for f in ("model.onnx", meta["onnx_file"])}
    assert sizes["model_quantized.onnx"] < 0.6 * sizes["model.onnx"]
    texts = pd.read_csv(test_texts, keep_default_na=False)["text"].tolist()[:2000]
    _, int8 = load_predictor(tmp_path / "q")
    _, fp32 = load_predictor(lively_run)
    exact, quantised = fp32(texts), int8(texts)
    same = quantised.argmax(1) == exact.argmax(1)
    # A random tiny model (weights drawn wide) has many close calls, and how int8 treats them
    # depends on the CPU's int8 kernels: 0.86 of labels agree on an AVX2-only CPU (0.965 on
    # the half where fp32's top-two margin is largest), more with VNNI. A broken export would
    # agree on ~1/4 of rows. MiniLM itself: benchmarks/results/export.md.
    top2 = np.sort(exact, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    clear = margin >= np.median(margin)
    assert same[clear].mean() >= 0.95, same[clear].mean()
    assert same.mean() >= 0.8, same.mean()
    # `newslora evaluate` measures what quantising cost, on the export itself
    test = DATA / "agnews" / "test.csv"
    gold = load_with_config(source_config(lively_run).data, test, need_labels=True)
    metrics = evaluate_run(tmp_path / "q", test, tmp_path / "int8.json")
    want = (int8(gold["text"].tolist()).argmax(1) == gold["label"].to_numpy()).mean()
    assert metrics["rows"] == 7600 and metrics["accuracy"] == pytest.approx(want)


def _moved_run(folder, model_path, *overrides):
    """A run directory built in-process, its trainable weights moved away from their init."""
    cfg = load_config(
        None,
        [f"model.name={model_path}", "model.max_length=64", "lora.r=4", "lora.targets=query,value"]
        + ["train.precision=fp32", f"train.output_dir={folder}", *overrides],
    )
    model, tokenizer = trained_looking_model(cfg)
    save_model(model, tokenizer, folder / "adapter")
    save_config(cfg, folder / "config.toml")
    return folder


def _plain_logits(folder, texts):
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, truncation=True)
    with torch.no_grad():
        return model(**batch.convert_to_tensors("pt")).logits.numpy()


@pytest.mark.parametrize(
    "model_type, overrides",
    [
        ("bert", ["model.head=linear"]),
        ("bert", ["lora.full_finetune=true"]),
        ("deberta", ["model.head=linear"]),
        ("deberta-v2", ["model.head=linear"]),
        ("modernbert", ["model.head=linear"]),
        ("albert", ["model.head=linear"]),
    ],
)
def test_linear_head_and_full_finetune_export_exactly(model_type, pool, tmp_path, overrides):
    """BERT, DeBERTa, ModernBERT and ALBERT hand a pooled vector to `classifier`: newslora's
    linear head is that Linear."""
    encoder = save_tiny_encoder(tmp_path / model_type, model_type, initializer_range=0.5)
    run = _moved_run(tmp_path / "run", encoder, *overrides)
    texts = pool["description"].head(300).tolist()
    _, logits_of = load_predictor(run)
    expected = logits_of(texts, progress=False)
    export_run(run, tmp_path / "hf", "hf")
    np.testing.assert_allclose(_plain_logits(tmp_path / "hf", texts), expected, atol=1e-4)
    assert len(set(expected.argmax(1))) > 1
    export_run(run, tmp_path / "onnx", "onnx")
    _, onnx_of = load_predictor(tmp_path / "onnx")
    np.testing.assert_allclose(onnx_of(texts, progress=False), expected, rtol=1e-3, atol=1e-3)
    if "lora.full_finetune=true" in overrides:
        with pytest.raises(NewsloraError, match="full fine-tune has no adapter"):
            export_run(run, tmp_path / "adapter", "adapter")
        return
    export_run(run, tmp_path / "adapter", "adapter")  # the head renamed to `classifier.*`
    base = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=4)
    plain = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    batch = AutoTokenizer.from_pretrained(tmp_path / "adapter")(
        texts, padding=True, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():  # unmerged LoRA against the merged weights: float rounding only
        got = plain(**batch).logits.numpy()
    # 2e-3 of the largest logit: ModernBERT under the floor's transformers 5.2 and torch 2.10
    # put one of 1,200 logits 1.1e-3 of it away (3e-5 with today's releases)
    np.testing.assert_allclose(got, expected, atol=2e-3 * max(1, np.abs(expected).max()))
    _, adapter_of = load_predictor(tmp_path / "adapter")  # newslora reads it back: same head
    np.testing.assert_allclose(adapter_of(texts, progress=False), expected, atol=1e-4)


def test_an_architecture_torch_export_cannot_trace_is_refused_for_onnx_only(pool, tmp_path, capsys):
    """Longformer's chunked attention has a shape torch.export cannot trace: `--format onnx`
    says so in one line and writes nothing; hf exports it and predicts like the run."""
    encoder = save_tiny_encoder(tmp_path / "longformer", "longformer", initializer_range=0.5)
    run = _moved_run(tmp_path / "run", encoder, "model.head=default")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run), str(tmp_path / "onnx"), "--format", "onnx"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert "torch.onnx cannot export this longformer model" in err[0]
    assert not (tmp_path / "onnx").exists()
    texts = pool["description"].head(50).tolist()
    export_run(run, tmp_path / "hf", "hf")
    _, torch_of = load_predictor(run)
    got = _plain_logits(tmp_path / "hf", texts)
    np.testing.assert_allclose(got, torch_of(texts, progress=False), atol=1e-4)


def test_a_base_that_classifies_other_classes_exports(lively_bert, pool, tmp_path):
    """A run started from a 2-class classifier (its head replaced by the run's 4-class one):
    the adapter export's own check and its model card's example load it, both formats
    predict like the run."""
    base = tmp_path / "two-class"
    AutoModelForSequenceClassification.from_pretrained(lively_bert, num_labels=2).save_pretrained(
        base
    )
    shutil.copy(f"{lively_bert}/tokenizer.json", base)
    run = _moved_run(tmp_path / "run", base)
    texts = pool["description"].head(50).tolist()
    _, torch_of = load_predictor(run)
    expected = torch_of(texts, progress=False)
    export_run(run, tmp_path / "hf", "hf")
    np.testing.assert_allclose(_plain_logits(tmp_path / "hf", texts), expected, atol=1e-4)
    export_run(run, tmp_path / "adapter", "adapter")
    card = (tmp_path / "adapter" / "README.md").read_text()
    scope = {}
    exec(card.split("```python\n")[1].split("```")[0], scope)  # the card's own example
    batch = scope["tokenizer"](texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        got = scope["model"](**batch).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_roberta_linear_head_is_refused_for_hf_and_adapter_but_exports_to_onnx(tmp_path, pool):
    """RoBERTa's own head is dense + tanh + out_proj on the first token: no exact home for one
    linear layer there. ONNX exports the model as it is."""
    from transformers import RobertaModel

    folder = tmp_path / "tiny-roberta"
    torch.manual_seed(0)
    config = RobertaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=0,
        initializer_range=0.5,
    )
    RobertaModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    run = _moved_run(tmp_path / "run", folder, "model.head=linear")
    texts = pool["description"].head(100).tolist()
    _assert_onnx_only(run, tmp_path, texts, "cannot hold one linear layer on the first token")
    run = _moved_run(tmp_path / "run-default", folder, "model.head=default")
    export_run(run, tmp_path / "hf-default", "hf")  # its own head: exported as it is
    _, torch_of = load_predictor(run)
    got = _plain_logits(tmp_path / "hf-default", texts)
    np.testing.assert_allclose(got, torch_of(texts, progress=False), atol=1e-4)


def test_mean_head_exports_to_onnx_only(lively_bert, pool, tmp_path):
    run = _moved_run(tmp_path / "run", lively_bert, "model.head=mean")
    texts = pool["description"].head(100).tolist()
    expected = _assert_onnx_only(run, tmp_path, texts, "'mean' has no standard transformers")
    assert len(set(expected.argmax(1))) > 1


def _assert_onnx_only(run, tmp_path, texts, refusal):
    """hf and adapter refuse (writing nothing); onnx predicts like the run. Returns its logits."""
    for fmt in ("hf", "adapter"):
        with pytest.raises(NewsloraError, match=refusal):
            export_run(run, tmp_path / fmt, fmt)
        assert not (tmp_path / fmt).exists()
    export_run(run, tmp_path / "onnx", "onnx")
    _, onnx_of = load_predictor(tmp_path / "onnx")
    _, torch_of = load_predictor(run)
    expected = torch_of(texts, progress=False)
    np.testing.assert_allclose(onnx_of(texts, progress=False), expected, atol=1e-3)
    return expected


def test_export_refuses_to_overwrite_what_is_not_an_export(tiny_run, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(NewsloraError, match="is not a newslora export"):
        export_run(tiny_run, tmp_path / "notes", "hf")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    with pytest.raises(NewsloraError, match="--format onnx only"):
        export_run(tiny_run, tmp_path / "x", "hf", quantize="int8")
    with pytest.raises(NewsloraError, match="not a finished newslora run"):
        export_run(tmp_path, tmp_path / "x", "hf")
    assert not (tmp_path / "x").exists()
    (tmp_path / "texts.csv").write_text("text\nStocks fell.\n")
    args = ["predict", tiny_run, tmp_path / "texts.csv", tmp_path / "p.csv", "--backend", "onnx"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"export it first: newslora export {tiny_run} OUT --format onnx" in stderr
