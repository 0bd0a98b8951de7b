"""Augmentation benchmark: what each `newslora augment` step does to accuracy.

    python benchmarks/augment.py                  # MiniLM-L6, 2,000 real rows, seeds 1 and 2
    python benchmarks/augment.py --transductive   # then the competition-set part (reported apart)

One fixed, stratified subset of the train pool (2,000 training + 500 validation rows, raw text)
is the real data of every arm; an arm adds one step's rows through `data.mix` (or switches
cleaning off) and trains the newslora recipe through the real CLI. Each arm is scored on
  - the official AG News test split (7,600 rows): in-domain;
  - the OOD proxy: the same 7,600 rows, each surface-shifted one of four ways (`shift_text`),
    which no step sees: typos, lower case without punctuation, headline-length truncation and
    locally shuffled word order (the competition's garbled half has all of these).
Step inputs are kept non-transductive: the LM is adapted on, and pseudo-labels are drawn from,
8,000 *other* pool rows with their labels dropped, never from test text. Seed 000's own GPT-2
rows are compared with ours at equal row counts and equal per-class counts.

`--transductive` adapts the LM on, and pseudo-labels, the competition set (half of it is AG
test text), then reports the competition predictions with and without adaptation (class
distribution, agreement) and the accuracy on its 4,000 AG-test rows: transductive numbers,
written apart (augment_transductive.json), never into the pool -> test table.
Rows go into benchmarks/results/accuracy.json (the accuracy table) and augment.json/.md.
"""

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
from common import (
    DATA,
    ENCODERS,
    REPO,
    RESULTS,
    RUNS,
    done,
    load_rows,
    newslora,
    save_rows,
    table,
    write_text,
)
from sklearn.model_selection import train_test_split

from newslora.augment import write_table
from newslora.config import AG_NEWS_LABELS
from newslora.data import clean_text, load_examples
from newslora.files import write_json

WORK = RUNS / "augment"
SHIFTS = ("typos", "lower_nopunct", "headline", "shuffled")


def shift_text(text, kind, rng):
    """One surface shift of a news text (the OOD proxy); deterministic given `rng`."""
    words = text.split()
    if kind == "typos":  # a character dropped, doubled or swapped in ~1 word of 6
        out = []
        for w in words:
            if len(w) > 3 and rng.random() < 0.17:
                i = rng.randrange(1, len(w) - 1)
                w = rng.choice(
                    [w[:i] + w[i + 1 :], w[:i] + w[i] + w[i:], w[:i] + w[i + 1] + w[i] + w[i + 2 :]]
                )
            out.append(w)
        return " ".join(out)
    if kind == "lower_nopunct":
        return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()
    if kind == "headline":
        return " ".join(words[:10])
    for start in range(0, len(words), 4):  # shuffled: word order scrambled within windows of 4
        window = words[start : start + 4]
        rng.shuffle(window)
        words[start : start + 4] = window
    return " ".join(words)


def prepare(args):
    """subset.csv (raw real rows), pool_unlabelled.csv, ood_proxy.csv, seed000 rows."""
    WORK.mkdir(parents=True, exist_ok=True)
    pool = pd.read_csv(DATA / "agnews" / "train_pool.csv", dtype=str, keep_default_na=False)
    subset, rest = train_test_split(
        pool, train_size=args.rows + args.val_rows, random_state=42, stratify=pool["label"]
    )
    write_table(subset, WORK / "subset.csv")
    unlabelled = rest.sample(n=8000, random_state=42)
    text = (unlabelled["title"] + " " + unlabelled["description"]).str.strip()
    write_table(pd.DataFrame({"text": text}), WORK / "pool_unlabelled.csv")
    test = load_examples(DATA / "agnews" / "test.csv", AG_NEWS_LABELS, need_labels=True)
    rng = random.Random(0)
    kinds = [SHIFTS[i % len(SHIFTS)] for i in range(len(test))]
    shifted = [shift_text(t, k, rng) for t, k in zip(test["text"], kinds, strict=True)]
    write_table(
        pd.DataFrame({"text": shifted, "label": test["label"], "shift": kinds}),
        WORK / "ood_proxy.csv",
    )


def common(seed):
    """Overrides every arm shares: encoder, the real rows, their validation split, the seed."""
    return [
        f"model.name={ENCODERS['minilm']}",
        f"data.train={WORK / 'subset.csv'}",
        f"data.test={DATA / 'agnews' / 'test.csv'}",
        "data.val_rows=500",
        "data.seed=42",
        f"train.seed={seed}",
    ]


def train(run_dir, seed, extra, config="configs/newslora.toml"):
    if not (run_dir / "train_summary.json").is_file():
        newslora("train", REPO / config, *common(seed), f"train.output_dir={run_dir}", *extra)
    return run_dir


def pseudo_label(out_dir, seed, corpus, start_run):
    """One self-training round from `start_run` on `corpus`; returns the round's run."""
    if not (out_dir / "round1" / "train_summary.json").is_file():
        newslora(
            "augment", "pseudo-label", REPO / "configs/newslora.toml", corpus, out_dir,
            *common(seed), "--run", start_run, "--rounds", "1", "--threshold", "0.9",
        )  # fmt: skip
    return out_dir / "round1"


def generate(out, corpus, args, filter_run):
    """SmolLM2, adapted on `args.adapt_rows` rows of `corpus`, writes `args.per_class` rows per
    class (`out`); `filter_run` keeps those it agrees with at calibrated confidence >= 0.9."""
    if not out.is_file():
        newslora(
            "augment", "generate", REPO / "configs/generate.toml", out,
            f"generate.corpus={corpus}", f"generate.adapt_rows={args.adapt_rows}",
            f"generate.per_class={args.per_class}", "generate.filter_run=",
        )  # fmt: skip
    kept = out.with_name(out.stem + "-filtered.csv")
    if not kept.is_file():
        newslora("augment", "filter", out, kept, "--run", filter_run, "--threshold", "0.9")
    return out, kept


def seed000_all():
    """Seed 000's 12,000 rows less the one that is empty once cleaned (its text is `&lt;b&gt`):
    newslora refuses empty texts, naming the row."""
    out = WORK / "seed000_synthetic.csv"
    if not out.is_file():
        theirs = pd.read_csv(DATA / "seed000" / "synthetic.csv", keep_default_na=False)
        theirs = theirs[theirs["text"].map(clean_text).str.len() > 0]
        write_table(theirs[["text", "label"]].assign(source="generated"), out)
    return out


def seed000_rows(like, out):
    """Seed 000's own generated rows, as many per class as `like` has."""
    if not out.is_file():
        theirs = pd.read_csv(seed000_all(), keep_default_na=False)
        counts = like["label"].value_counts()
        parts = [theirs[theirs["label"] == k].sample(n, random_state=0) for k, n in counts.items()]
        write_table(pd.concat(parts), out)
    return out


def mix(*paths):
    return "data.mix=[" + ",".join(f'"{p}"' for p in paths) + "]"


def score(run_dir):
    """Test metrics (newslora evaluate) and OOD-proxy accuracy, overall and per shift."""
    if not (run_dir / "metrics.json").is_file():
        newslora("evaluate", run_dir)
    preds = run_dir / "ood_predictions.csv"
    if not preds.is_file():
        newslora("predict", run_dir, WORK / "ood_proxy.csv", preds)
    ood = pd.read_csv(WORK / "ood_proxy.csv")
    ood["predicted"] = pd.read_csv(preds)["Label"].to_numpy()
    per_shift = {
        k: round(100 * float((g["predicted"] == g["label"]).mean()), 2)
        for k, g in ood.groupby("shift")
    }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics, round(100 * float((ood["predicted"] == ood["label"]).mean()), 2), per_shift


def result_row(recipe, seed, run_dir):
    summary = json.loads((run_dir / "train_summary.json").read_text())
    metrics, ood, per_shift = score(run_dir)
    by_source = summary["rows_by_source"]
    real = by_source.get("real", summary["train_rows"])
    return {
        "benchmark": "augment",
        "recipe": recipe,
        "encoder": "minilm",
        "seed": seed,
        "test_accuracy": round(100 * metrics["accuracy"], 2),
        "macro_f1": metrics["macro_f1"],
        "ood_accuracy": ood,
        "ood_by_shift": per_shift,
        "val_accuracy": round(100 * summary["val_accuracy"], 2),
        "trainable_params": summary["trainable_params"],
        "train_rows": real,
        "added_rows": summary["train_rows"] - real,
        "rows_by_source": by_source,
        "wall_s": summary["wall_s"],  # training alone (the step's files are made once)
        "run": str(run_dir.relative_to(REPO)),
        "train_samples_per_s": summary["train_samples_per_s"],
        "device": summary["device"],
        "precision": summary["precision"],
    }


ARMS = (  # in this order; a run directory is named by its arm's position (arm_dir)
    "baseline",
    "no-clean",
    "+synonyms",
    "+generated",
    "+generated filtered",
    "+seed000 rows (as many as generated)",
    "+seed000 rows (as many as filtered)",
    "+pseudo",
    "seed000 recipe",
    "seed000 pipeline (+synonyms +12,000 seed000 rows)",
)


def arm_dir(arm, seed):
    if arm == "baseline":
        return WORK / f"baseline-s{seed}"
    return WORK / f"arm{ARMS.index(arm)}-s{seed}"


def in_domain_arms(args):
    """arm name -> (config, extra overrides); the step files are made here (once)."""
    baseline = train(arm_dir("baseline", 1), 1, [])
    synonyms = WORK / "synonyms.csv"
    if not synonyms.is_file():
        newslora("augment", "synonyms", WORK / "subset.csv", synonyms, "--seed", "0")
    generated, kept = generate(WORK / "generated.csv", WORK / "pool_unlabelled.csv", args, baseline)
    theirs_all = seed000_rows(pd.read_csv(generated), WORK / "seed000_as_generated.csv")
    theirs_kept = seed000_rows(pd.read_csv(kept), WORK / "seed000_as_filtered.csv")
    newslora_toml, seed000_toml = "configs/newslora.toml", "configs/seed000.toml"
    return {
        "baseline": (newslora_toml, []),
        "no-clean": (newslora_toml, ["data.clean=false"]),
        "+synonyms": (newslora_toml, [mix(synonyms)]),
        "+generated": (newslora_toml, [mix(generated)]),
        "+generated filtered": (newslora_toml, [mix(kept)]),
        "+seed000 rows (as many as generated)": (newslora_toml, [mix(theirs_all)]),
        "+seed000 rows (as many as filtered)": (newslora_toml, [mix(theirs_kept)]),
        "+pseudo": None,  # self-training from the baseline run of the same seed
        "seed000 recipe": (seed000_toml, ["train.epochs=3.0"]),
        "seed000 pipeline (+synonyms +12,000 seed000 rows)": (
            seed000_toml,
            ["train.epochs=3.0", mix(synonyms, seed000_all())],
        ),
    }


def run_arm(arm, spec, seed):
    """Train one arm (pseudo: one self-training round from the seed's baseline); its run."""
    baseline = train(arm_dir("baseline", seed), seed, [])
    if arm == "baseline":
        return baseline
    if arm == "+pseudo":
        return pseudo_label(arm_dir(arm, seed), seed, WORK / "pool_unlabelled.csv", baseline)
    config, extra = spec
    return train(arm_dir(arm, seed), seed, extra, config)


def run_arms(args):
    store = RESULTS / "accuracy.json"
    rows = load_rows(store)
    measured = done(rows, ("recipe", "seed"), benchmark="augment")
    arms = in_domain_arms(args)
    assert tuple(arms) == ARMS
    selected = args.arms.split(",") if args.arms else ARMS
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in selected:
            recipe = f"newslora {arm}" if not arm.startswith("seed000") else arm
            if (recipe, seed) in measured:
                continue
            row = result_row(recipe, seed, run_arm(arm, arms[arm], seed))
            rows.append(row)
            save_rows(rows, store)
            write_report()
            print(f"{arm} / seed {seed}: test {row['test_accuracy']}%, OOD {row['ood_accuracy']}%")


def transductive(args):
    """Adaptation on the competition set itself; every number here is transductive."""
    comp = DATA / "competition" / "test_unlabelled.csv"
    baseline = train(arm_dir("baseline", 1), 1, [])
    _, kept = generate(WORK / "generated_competition.csv", comp, args, baseline)
    runs = {
        "baseline (no adaptation)": baseline,
        "+generated filtered, LM adapted on pool texts": arm_dir("+generated filtered", 1),
        "+generated filtered, LM adapted on competition set": train(
            WORK / "t-generated-s1", 1, [mix(kept)]
        ),
        "+pseudo from competition set": pseudo_label(WORK / "t-pseudo-s1", 1, comp, baseline),
    }
    test = pd.read_csv(DATA / "agnews" / "test.csv", header=None, dtype=str)
    gold = dict(zip((test[1] + " " + test[2]).str.strip(), test[0].astype(int) - 1, strict=True))
    texts = pd.read_csv(comp)["text"].str.strip()
    in_test = texts.map(gold)
    report, base_pred = {}, None
    for name, run_dir in runs.items():
        preds_path = run_dir / "competition_predictions.csv"
        if not preds_path.is_file():
            newslora("predict", run_dir, comp, preds_path)
        pred = pd.read_csv(preds_path)["Label"].to_numpy()
        base_pred = pred if base_pred is None else base_pred
        known = in_test.notna().to_numpy()
        metrics, ood, _ = score(run_dir)
        report[name] = {
            "run": str(run_dir.relative_to(REPO)),
            "class_distribution": {
                AG_NEWS_LABELS[k]: int((pred == k).sum()) for k in range(len(AG_NEWS_LABELS))
            },
            "agreement_with_baseline": round(100 * float((pred == base_pred).mean()), 2),
            "agreement_on_non_test_half": round(
                100 * float((pred[~known] == base_pred[~known]).mean()), 2
            ),
            "accuracy_on_ag_test_half": round(
                100 * float((pred[known] == in_test[known].astype(int)).mean()), 2
            ),
            "ag_test_accuracy": round(100 * metrics["accuracy"], 2),
            "ood_proxy_accuracy": ood,
        }
    write_json(RESULTS / "augment_transductive.json", report)
    write_report()


def _mean(group, key):
    return float(np.mean([r[key] for r in group]))


def _paired_delta(group, base, key):
    """Mean of (arm - baseline) over the seeds both have: differences between seeds cancel."""
    base = {r["seed"]: r[key] for r in base or []}
    deltas = [r[key] - base[r["seed"]] for r in group if r["seed"] in base]
    return f"{np.mean(deltas):+.2f}" if deltas else ""


def effects_table(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row["recipe"], []).append(row)
    base = groups.get("newslora baseline")
    header = ["arm", "seeds", "test %", "Δ test (paired)", "OOD proxy %", "Δ OOD", *SHIFTS]
    lines = []
    for recipe, group in groups.items():
        test = [r["test_accuracy"] for r in group]
        shifts = [np.mean([r["ood_by_shift"][k] for r in group]) for k in SHIFTS]
        lines.append(
            [
                recipe,
                len(group),
                f"{np.mean(test):.2f} ± {(max(test) - min(test)) / 2:.2f}",
                _paired_delta(group, base, "test_accuracy"),
                f"{_mean(group, 'ood_accuracy'):.2f}",
                _paired_delta(group, base, "ood_accuracy"),
                *(f"{s:.2f}" for s in shifts),
                f"{_mean(group, 'added_rows'):,.0f}",
                f"{_mean(group, 'wall_s'):.0f}",
            ]
        )
    return table([*header, "rows added", "train s"], lines)


def generation_section(generated, title):
    """Generation and filter reports of `generated` (a CSV from `generate`), with examples."""
    gen_path = Path(str(generated) + ".report.json")
    kept = generated.with_name(generated.stem + "-filtered.csv")
    filter_path = Path(str(kept) + ".report.json")
    if not (gen_path.is_file() and filter_path.is_file()):
        return []
    gen, verdict = json.loads(gen_path.read_text()), json.loads(filter_path.read_text())
    rates = ", ".join(f"{k} {100 * v:.0f}%" for k, v in verdict["keep_rate"].items())
    lines = [
        f"## {title}",
        "",
        f"{gen['model']} adapted (LoRA) on {gen['adapted_on']['rows']:,} rows of "
        f"`{Path(gen['adapted_on']['corpus']).name}` (final loss {gen['adapt_loss']:.3f}), then "
        f"{gen['generated']:,} rows at {gen['rows_per_s']} rows/s. The filter (the baseline "
        f"run, calibrated confidence >= {verdict['threshold']}) kept {verdict['kept']:,}; "
        f"keep rate per class: {rates}. Five kept and five rejected rows per class:",
        "",
    ]
    for label, examples in verdict["examples"].items():
        for kind in ("kept", "rejected"):
            lines.append(f"**{label}, {kind}:**")
            lines += [f"- {t[:220]}" for t in examples[kind]] + [""]
    return lines


def write_report():
    rows = [r for r in load_rows(RESULTS / "accuracy.json") if r.get("benchmark") == "augment"]
    lines = [
        "# Augmentation benchmark",
        "",
        "MiniLM-L6, newslora recipe, 2,000 real pool rows (+500 validation), seeds as listed.",
        "Test: official AG News test split, 7,600 rows. OOD proxy: the same rows, surface-shifted",
        "(per-shift accuracy in the last columns). `python benchmarks/augment.py --seeds 1,2`",
        "",
        *effects_table(rows),
        "",
        *generation_section(WORK / "generated.csv", "Generated rows (LM adapted on pool texts)"),
    ]
    trans = RESULTS / "augment_transductive.json"
    if trans.is_file():
        lines += [
            "## Transductive: adaptation on the competition set (reported apart)",
            "",
            "`python benchmarks/augment.py --transductive --per-class 250 --adapt-rows 500`. The",
            "competition set holds 4,000 AG test texts: every number below comes from runs that",
            "trained on (unlabelled) test text.",
            "",
            *transductive_table(json.loads(trans.read_text())),
            "",
            *generation_section(
                WORK / "generated_competition.csv",
                "Generated rows (LM adapted on the competition set)",
            ),
        ]
    write_text(RESULTS / "augment.md", "\n".join(lines) + "\n")


def transductive_table(report):
    keys = [
        "agreement_with_baseline", "agreement_on_non_test_half", "accuracy_on_ag_test_half",
        "ag_test_accuracy", "ood_proxy_accuracy",
    ]  # fmt: skip
    header = [
        "run", *AG_NEWS_LABELS, "agreement with baseline %", "on non-test half %",
        "acc. on AG-test half %", "AG test %", "OOD proxy %",
    ]  # fmt: skip
    rows = [
        [name, *r["class_distribution"].values(), *(r[k] for k in keys)]
        for name, r in report.items()
    ]
    return table(header, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2", help="training seeds, comma list")
    parser.add_argument("--rows", type=int, default=2000, help="real training rows")
    parser.add_argument("--val-rows", type=int, default=500)
    parser.add_argument("--per-class", type=int, default=500, help="generated rows per class")
    parser.add_argument("--adapt-rows", type=int, default=1000, help="LM adaptation rows")
    parser.add_argument("--arms", default="", help="comma list of arm names (default: all)")
    parser.add_argument("--transductive", action="store_true", help="competition-set part")
    args = parser.parse_args()
    if not (WORK / "ood_proxy.csv").is_file():
        prepare(args)
    transductive(args) if args.transductive else run_arms(args)


if __name__ == "__main__":
    main()
