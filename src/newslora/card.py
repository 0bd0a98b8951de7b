"""Model card: README.md of an export, in the Hugging Face Hub's format (YAML front matter:
base_model, library_name, pipeline_tag, datasets, metrics; the licence is left to the user),
filled from the run: data and row counts, recipe, trainable parameters against the budget,
validation and test metrics (train_summary.json, metrics.json), how to reproduce, limits."""

import json
from pathlib import Path

from newslora.config import AG_NEWS_LABELS
from newslora.files import read_json
from newslora.predict import EXPORT_CONFIG
from newslora.tables import is_hub_id

LIBRARIES = {"hf": "transformers", "adapter": "peft", "onnx": "onnx"}


def model_card(run_dir, cfg, meta, out_dir, base_hub_id):
    """README.md in the Hub's format: YAML front matter, then what the run was and measured."""
    summary = read_json(run_dir / "train_summary.json")
    metrics = read_json(run_dir / "metrics.json")
    base = base_hub_id
    front = [
        "---",
        *([f"base_model: {base}"] if base else []),
        f"library_name: {LIBRARIES[meta['format']]}",
        "pipeline_tag: text-classification",
        *_yaml_list("datasets", _datasets(cfg)),
        *_yaml_list("metrics", ["accuracy", "f1"]),
        *_yaml_list("tags", ["newslora", "lora", "text-classification"]),
        "license:  # fill in before publishing: the base model's and the data's terms apply",
        "---",
    ]
    labels = ", ".join(cfg.data.labels)
    body = [
        f"# {run_dir.name}: news topic classifier ({meta['format']} export)",
        "",
        f"`{meta['base_model']}` fine-tuned with newslora to label a text as "
        f"one of: {labels}. {_recipe_line(cfg)}",
        "",
        "## Use",
        "",
        USAGE[meta["format"]].format(out=out_dir, base=meta["base_model"], **_label_maps(cfg)),
        "",
        _with_newslora(out_dir, meta["format"]),
        "",
        "## Data",
        "",
        *_data_rows(cfg, summary),
        "",
        "## Recipe",
        "",
        *_recipe_rows(cfg, summary),
        "",
        "## Results",
        "",
        *_result_rows(summary, metrics),
        "",
        "## Reproduce",
        "",
        "```bash",
        f"newslora train {EXPORT_CONFIG}   # this run's resolved config, shipped in this folder",
        f"newslora evaluate {cfg.train.output_dir}",
        f"newslora export {cfg.train.output_dir} OUT --format {meta['format']}"
        + (" --quantize int8" if meta.get("quantize") else ""),
        "```",
        "",
        "## Limits",
        "",
        *_limits(cfg, summary, meta),
    ]
    return "\n".join(front + [""] + body) + "\n"


def _with_newslora(out, fmt):
    base = (
        " (its base encoder found by `model.name` in `newslora.toml`)" if fmt == "adapter" else ""
    )
    return (
        f"With newslora installed, `newslora predict {out} texts.csv out.csv`, `newslora evaluate "
        f"{out} --data labelled.csv` and `newslora serve {out}` run this folder{base}."
    )


USAGE = {
    "hf": """```python
from transformers import pipeline

classify = pipeline("text-classification", model="{out}")
print(classify(["Stocks fell as oil prices rose."], truncation=True))
```""",
    "adapter": """```python
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

base = AutoModelForSequenceClassification.from_pretrained(  # the adapter brings the head
    "{base}", num_labels={n}, id2label={id2label}, label2id={label2id},
    ignore_mismatched_sizes=True,  # so a base that is a classifier of other classes loads too
)
model = PeftModel.from_pretrained(base, "{out}").eval()
tokenizer = AutoTokenizer.from_pretrained("{out}")
batch = tokenizer(["Stocks fell as oil prices rose."], truncation=True, return_tensors="pt")
print(model.config.id2label[int(model(**batch).logits.argmax(-1)[0])])
```""",
    "onnx": """```python
import onnxruntime as ort
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{out}")
session = ort.InferenceSession("{out}/model.onnx", providers=["CPUExecutionProvider"])
batch = tokenizer(["Stocks fell as oil prices rose."], truncation=True, return_tensors="np")
logits = session.run(None, {{i.name: batch[i.name] for i in session.get_inputs()}})[0]
print({id2label}[int(logits.argmax(-1)[0])])
```
`model_quantized.onnx` (with `--quantize int8`) loads the same way.""",
}


def _label_maps(cfg):
    labels = list(cfg.data.labels)
    return {
        "n": len(labels),
        "id2label": repr(dict(enumerate(labels))),
        "label2id": repr({name: i for i, name in enumerate(labels)}),
    }


def _yaml_list(key, values):
    return [f"{key}:", *(f"- {json.dumps(v)}" for v in values)] if values else []


def _datasets(cfg):
    """Hub dataset ids behind the data settings (a local file has none; AG News files get AG's)."""
    ids = {
        spec.split(":")[0]
        for spec in (cfg.data.train, cfg.data.test)
        if is_hub_id(spec) and not Path(spec.split(":")[0]).exists()
    }
    if not ids and list(cfg.data.labels) == AG_NEWS_LABELS:
        ids = {"fancyzhx/ag_news"}
    return sorted(ids)


def _recipe_line(cfg):
    if cfg.lora.full_finetune:
        return "Every weight was fine-tuned (no LoRA)."
    return (
        f"LoRA (r={cfg.lora.r}) on {', '.join(cfg.lora.targets)}, with a "
        f"{cfg.model.head} classification head."
    )


def _data_rows(cfg, summary):
    rows = ["| | |", "|---|---|", f"| training data | `{cfg.data.train}` |"]
    if summary:
        by_source = ", ".join(f"{k}: {v:,}" for k, v in summary.get("rows_by_source", {}).items())
        rows.append(f"| training rows | {summary['train_rows']:,} ({by_source}) |")
        rows.append(
            f"| validation rows | {summary['val_rows']:,} (checkpoint selection, calibration) |"
        )
    for mix in cfg.data.mix:
        rows.append(f"| mixed in | `{mix}` |")
    rows.append(f"| labels | {', '.join(cfg.data.labels)} |")
    columns = cfg.data.text_columns or ["title", "description"]
    text = ' + " " + '.join(f"`{c}`" for c in columns)
    default = "" if cfg.data.text_columns else " (or a `text` column)"
    rows.append(f"| text the model was trained on | {text}{default}: give it texts built so |")
    rows.append(f"| cleaning of AG News escapes | {'on' if cfg.data.clean else 'off'} |")
    return rows


def _recipe_rows(cfg, summary):
    lora = cfg.lora
    rows = [
        "| | |",
        "|---|---|",
        f"| encoder | `{cfg.model.name}` |",
        f"| head | {cfg.model.head} |",
        f"| encoder dropout while training | {cfg.model.dropout} |",
    ]
    if not lora.full_finetune:
        rows.append(
            f"| LoRA | r={lora.r}, alpha {lora.alpha}, rsLoRA {'on' if lora.rslora else 'off'}, "
            f"dropout {lora.dropout}, bias {lora.bias}, targets {', '.join(lora.targets)}"
            + (f", layers {lora.layers}" if lora.layers else "")
            + " |"
        )
    t = cfg.train
    rows.append(
        f"| training | lr {t.lr}, batch {t.batch_size}, epochs {t.epochs}"
        + (f", max steps {t.max_steps}" if t.max_steps > 0 else "")
        + f", warm-up {t.warmup_ratio} then {t.schedule}, weight decay {t.weight_decay}, "
        f"seed {t.seed}, max length {cfg.model.max_length} |"
    )
    if summary:
        total = summary["params"]["total_params"]
        trainable = summary["trainable_params"]
        budget = f"{t.budget:,}" if t.budget else "none"
        rows += [
            f"| trainable parameters | {trainable:,} of {total:,} ({100 * trainable / total:.2f}%);"
            f" budget {budget} |",
            f"| run | {summary['steps']} steps, {summary['wall_s']} s on {summary['device']}, "
            f"{summary['precision']} |",
        ]
    return rows


def _result_rows(summary, metrics):
    rows = []
    if summary:
        rows.append(
            f"Validation accuracy: **{100 * summary['val_accuracy']:.2f}%** "
            f"({summary['val_rows']:,} rows held out from the training data)."
        )
    if not metrics:
        return rows + ["", "Not evaluated on a test set (run `newslora evaluate` before export)."]
    rows += [
        "",
        f"Test (`{metrics['data']}`, {metrics['rows']:,} rows): accuracy "
        f"**{100 * metrics['accuracy']:.2f}%**, macro-F1 **{100 * metrics['macro_f1']:.2f}%**.",
        "",
        "| class | precision % | recall % | F1 % | rows |",
        "|---|---|---|---|---|",
    ]
    for name, c in metrics["per_class"].items():
        rows.append(
            f"| {name} | {100 * c['precision']:.2f} | {100 * c['recall']:.2f} | "
            f"{100 * c['f1']:.2f} | {c['support']:,} |"
        )
    return rows


def _limits(cfg, summary, meta):
    rows = [
        f"* Knows only these classes: {', '.join(cfg.data.labels)}; any other text is still "
        "put into one of them.",
        f"* Reads at most {cfg.model.max_length} tokens; longer texts are cut (pass "
        "`truncation=True`).",
        "* Measured on the data above only (English news, in-domain); other sources, styles and "
        "languages are untested.",
        f"* Scores are softmax(logits); newslora's calibrated confidence divides the logits by "
        f"T = {meta['temperature']} first (fitted on the validation rows).",
    ]
    if summary and summary["train_rows"] < 5000:
        rows.append(f"* Trained on {summary['train_rows']:,} rows only.")
    if meta.get("quantize"):
        rows.append("* int8 weights: labels can differ from the fp32 model on close calls.")
    return rows
