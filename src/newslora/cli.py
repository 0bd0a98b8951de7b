"""LoRA fine-tuning of text encoders for news topics, under a trainable-parameter budget.

User errors (bad files, rows, configs, over budget) print one line and exit with status 2;
Ctrl-C exits with 130, SIGTERM with 143 (training first saves a checkpoint --resume continues).
"""

import argparse
import os
import socket
import sys
import warnings
from dataclasses import replace

from newslora import Interrupted, NewsloraError, __version__
from newslora.flags import (
    PICKLE_HELP,
    backend_arg,
    config_flags,
    file_args,
    file_options,
    judge_args,
    load_with_flags,
)
from newslora.machine import fit_process


def _use_offline_mode_if_hub_unreachable():
    """Without a network, Hub clients retry each file for ~25 s; fail fast to local files."""
    if "HF_HUB_OFFLINE" in os.environ:
        return
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = "1"


def cmd_train(args):
    from newslora.config import config_help, load_config
    from newslora.train import Recipe

    if args.help_config:
        print(config_help())
        return
    if not args.config:
        raise NewsloraError("train: give a CONFIG.toml (see configs/)")
    cfg = load_config(args.config, args.overrides)
    recipe = Recipe(cfg).setup(resume=args.resume)
    print(
        f"training {cfg.model.name}: {len(recipe.train_df):,} rows "
        f"(+{len(recipe.val_df):,} validation) in {len(recipe.cfg.data.labels)} classes, "
        f"{recipe.count.trainable:,} trainable parameters"
    )
    recipe.train().save()
    if recipe.trainer.is_world_process_zero():
        print(
            f"val accuracy {100 * recipe.val_metrics['eval_accuracy']:.2f}% | "
            f"{recipe.wall_s:.0f} s | run saved to {recipe.run_dir}"
        )


def cmd_evaluate(args):
    from newslora.evaluate import evaluate_run

    m = evaluate_run(
        args.run_dir, args.data, args.out, args.allow_pickle, args.backend, **file_options(args)
    )
    print(
        f"{m['data']}: {m['rows']:,} rows | accuracy {100 * m['accuracy']:.2f}% | "
        f"macro-F1 {100 * m['macro_f1']:.2f}% | {m['samples_per_s']:.0f} rows/s"
    )
    width = max([12, *map(len, m["per_class"])])  # class names of another source run long
    for name, c in m["per_class"].items():
        print(
            f"  {name:<{width}} precision {100 * c['precision']:6.2f}  recall "
            f"{100 * c['recall']:6.2f}  f1 {100 * c['f1']:6.2f}  n={c['support']}"
        )
    if m["absent_classes"]:
        print(
            f"  absent from the gold labels (no per-class row, not in macro-F1): "
            f"{', '.join(m['absent_classes'])}"
        )


def cmd_predict(args):
    from newslora.predict import predict_run

    table = predict_run(
        args.run_dir,
        args.input,
        args.output,
        allow_pickle=args.allow_pickle,
        batch_size=args.batch_size,
        backend=args.backend,
        names=args.label_names,
        **file_options(args),
    )
    counts = table["Label"].value_counts().sort_index().to_dict()
    ids = table.attrs["id_column"]
    ids = f"IDs from column '{ids}'" if ids else "IDs 0..n-1 (no ID column)"
    print(f"wrote {len(table):,} predictions to {args.output} ({ids}; per label: {counts})")


def cmd_budget(args):
    from newslora.budget import check_budget, count_config, plan, plan_report, report, resolve_rank
    from newslora.config import load_config
    from newslora.data import training_labels

    cfg = load_config(args.config, args.overrides)
    cfg = replace(cfg, data=replace(cfg.data, labels=training_labels(cfg.data)))
    if args.plan:
        print(plan_report(cfg, *plan(cfg)))
        return
    cfg = resolve_rank(cfg)
    count = count_config(cfg)
    print(report(cfg, count))
    check_budget(count, cfg.train.budget)


def cmd_augment(args):
    from newslora.augment import clean_file, synonyms_file

    cfg = load_with_flags(args)
    if args.step == "clean":
        table = clean_file(cfg.data, args.input, args.output, allow_pickle=args.allow_pickle)
    else:
        table = synonyms_file(cfg.data, args.input, args.output, cfg.synonyms)
    counts = table["source"].value_counts().to_dict()
    print(f"wrote {len(table):,} rows to {args.output} (by source: {counts})")


def cmd_generate(args):
    import tempfile

    from newslora.augment import generate_file
    from newslora.config import load_config

    cfg = load_config(args.config, args.overrides)
    with tempfile.TemporaryDirectory() as work_dir:
        report = generate_file(cfg, args.output, work_dir)
    print(f"generated {report['generated']:,} rows ({report['rows_per_s']} rows/s)")
    _print_verdict(report, args.output)


def cmd_filter(args):
    from newslora.augment import filter_file
    from newslora.predict import source_config

    cfg = load_with_flags(args)
    data = cfg.data if args.config else source_config(args.run).data  # the judge's classes
    report = filter_file(data, args.input, args.output, args.run, cfg.generate.threshold)
    _print_verdict(report, args.output)


def _print_verdict(report, output):
    rates = report.get("keep_rate")
    rates = ", ".join(f"{k} {100 * v:.0f}%" for k, v in rates.items()) if rates else ""
    print(
        f"kept {report['kept']:,} -> {output}"
        + (f"; keep rate per class: {rates}" if rates else "")
    )
    for label, examples in report["examples"].items():
        for kind in ("kept", "rejected"):
            for text in examples[kind]:
                print(f"  [{label} {kind}] {text[:160]}")


def cmd_pseudo(args):
    from newslora.augment.pseudo import self_train

    cfg = load_with_flags(args)
    threshold = cfg.generate.threshold
    report = self_train(cfg, args.corpus, args.output_dir, args.run, args.rounds, threshold)
    for r in report["rounds"]:
        print(
            f"round {r['round']}: +{r['rows_added']:,} pseudo-labelled rows "
            f"{r['added_per_class']}, val accuracy {100 * r['val_accuracy']:.2f}% -> {r['run']}"
        )
    if "stopped" in report:
        print(f"stopped: {report['stopped']}")


def cmd_doctor(args):
    from newslora.doctor import report, run_checks

    text, ok = report(run_checks(args.run_dir))
    print(text)
    if not ok:
        sys.exit(1)


def cmd_export(args):
    from pathlib import Path

    from newslora.export import export_run

    meta = export_run(args.run_dir, args.out_dir, args.format, args.quantize)
    files = ", ".join(sorted(p.name for p in Path(args.out_dir).iterdir()))
    print(
        f"exported {args.run_dir} as {meta['format']} to {args.out_dir} ({files}); checked "
        f"against the run: largest logit difference {meta['check_max_abs_diff']:.2g}"
    )


def cmd_serve(args):
    from newslora.serve import serve

    serve(
        args.path,
        args.host,
        args.port,
        backend=args.backend,
        max_texts=args.max_texts,
        max_bytes=args.max_bytes,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        keep_alive_s=args.keep_alive_s,
    )


def cmd_plot(args):
    from newslora.plots import plot_curves

    for path in plot_curves(args.run_dir):
        print(path)


def build_parser():
    parser = argparse.ArgumentParser(prog="newslora", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"newslora {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune with LoRA and write a run directory")
    p.add_argument("config", nargs="?", help="TOML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. lora.r=8 train.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--help-config", action="store_true", help="list every config key and exit")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a run (or its export) on a labelled set")
    p.add_argument("run_dir", help="a run directory, or its hf, adapter or onnx export")
    p.add_argument("--data", help="labelled file or Hub id:split (default: the config's data.test)")
    p.add_argument("--out", help="metrics JSON path (default RUN_DIR/metrics.json)")
    p.add_argument("--allow-pickle", action="store_true", help=PICKLE_HELP)
    backend_arg(p)
    file_args(p, labelled=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="write an ID,Label CSV for a file of texts")
    p.add_argument("run_dir")
    p.add_argument(
        "input",
        nargs="?",
        help="file of texts: CSV/TSV/Parquet/JSON(L)/.txt (also zipped), or .pkl (see below); "
        "left out: the run's data.predict",
    )
    p.add_argument(
        "output",
        help="file to write: ID,Label (ID from an `id` column, else 0..n-1), as CSV or as its "
        "name says (.tsv, .parquet, .jsonl, .json; .gz, .bz2, .xz, .zip)",
    )
    p.add_argument("--allow-pickle", action="store_true", help=PICKLE_HELP)
    p.add_argument("--batch-size", type=int, help="rows per batch (default train.eval_batch_size)")
    p.add_argument(
        "--label-names",
        action="store_true",
        help="write class names (the run's data.labels) in Label, not ids",
    )
    file_args(p, labelled=False)
    backend_arg(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("budget", help="exact trainable-parameter count, no weights downloaded")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="section.key=value")
    p.add_argument(
        "--plan",
        action="store_true",
        help="list adapter layouts that fit the budget, each at its largest rank, "
        "and pick one (most matrices adapted, then rank)",
    )
    p.set_defaults(func=cmd_budget)

    p = sub.add_parser("augment", help="write an augmented dataset file (CSV, Parquet, ...)")
    steps = p.add_subparsers(dest="step", required=True)
    for step, help_text in (
        ("clean", "repair AG News escapes and whitespace (idempotent)"),
        ("synonyms", "WordNet synonym replacement, EDA-style, seeded"),
    ):
        s = steps.add_parser(step, help=help_text)
        s.add_argument("input", help="labelled or unlabelled data file")
        s.add_argument(
            "output", help="file to write (text, label, source[, origin]): CSV, or as its name says"
        )
        s.add_argument("--config", help="take labels and text columns from this config")
        s.set_defaults(func=cmd_augment)
    s = steps.add_parser(
        "generate",
        help="adapt a causal LM to unlabelled texts, write rows "
        "per class, keep those a trained run agrees with (config [generate])",
    )
    s.add_argument("config", help="TOML config with a [generate] section (see configs/)")
    s.add_argument("output", help="kept rows (CSV, or as named); .scored.csv, .report.json beside")
    s.add_argument("overrides", nargs="*", help="section.key=value, e.g. generate.per_class=50")
    s.set_defaults(func=cmd_generate)
    s = steps.add_parser(
        "filter",
        help="keep labelled rows (e.g. generated) that a trained run assigns to their own "
        "label with calibrated confidence >= threshold",
    )
    s.add_argument("input", help="labelled data file (text, label)")
    s.add_argument("output", help="kept rows (CSV, or as named); .scored.csv, .report.json beside")
    judge_args(s, "the trained run that judges the rows")
    s.add_argument(
        "--config", help="take labels and text columns from this config (default: the run's)"
    )
    s.set_defaults(func=cmd_filter)
    s = steps.add_parser(
        "pseudo-label",
        help="self-training: label confident corpus rows with a "
        "run, retrain on real + those rows; 1-3 rounds",
    )
    s.add_argument("config", help="TOML config each round trains with (its data.train is real)")
    s.add_argument("corpus", help="unlabelled texts (a `text` column)")
    s.add_argument("output_dir", help="round runs, pseudo-roundN.csv files, pseudo_report.json")
    s.add_argument("overrides", nargs="*", help="section.key=value")
    judge_args(s, "the trained run that labels round 1")
    s.add_argument("--rounds", type=int, default=1, choices=(1, 2, 3))
    s.set_defaults(func=cmd_pseudo)
    p_clean, p_syn = steps.choices["clean"], steps.choices["synonyms"]
    p_clean.add_argument("--allow-pickle", action="store_true", help=PICKLE_HELP)
    p_syn.add_argument("overrides", nargs="*", help="section.key=value, e.g. synonyms.rate=0.2")
    config_flags(p_syn, "synonyms")  # --rate, --insert, ... from config.SynonymConfig

    p = sub.add_parser("doctor", help="check what a run needs (packages, weights, data, WordNet)")
    p.add_argument("--run-dir", default="runs", help="folder runs are written to (write check)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("plot", help="loss/accuracy curves and confusion matrix as PNG")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("export", help="a run as a Hugging Face, peft adapter or ONNX folder")
    p.add_argument("run_dir")
    p.add_argument("out_dir", help="folder to write (replaced if it holds an earlier export)")
    p.add_argument(
        "--format",
        choices=("hf", "adapter", "onnx"),
        default="hf",
        help="hf: merged model for transformers.pipeline; adapter: peft adapter + head; "
        "onnx: model.onnx for ONNX Runtime",
    )
    p.add_argument("--quantize", choices=("int8",), help="onnx only: add an int8 model")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="HTTP service: POST /predict, GET /health (FastAPI)")
    p.add_argument("path", help="a run directory, or an hf or onnx export folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    backend_arg(p)
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (413 above)")
    p.add_argument("--max-bytes", type=int, default=1_000_000, help="request body size (413 above)")
    p.add_argument("--max-batch", type=int, default=64, help="texts run together at most")
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to join"
    )
    p.add_argument(
        "--keep-alive-s", type=int, default=75, help="how long an idle connection stays open"
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # before torch is imported; only a command line (no argv given) may start over on tcmalloc
    fit_process(restart=argv is None)
    if extra:  # overrides may come after a flag: `budget CONFIG --plan lora.r=8`
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    warnings.filterwarnings("ignore", category=FutureWarning)
    _use_offline_mode_if_hub_unreachable()
    try:
        args.func(args)
    except Interrupted as e:
        print(f"newslora: {e}", file=sys.stderr)
        sys.exit(e.status)
    except NewsloraError as e:
        print(f"newslora: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\nnewslora: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug, or an input we did not foresee: still one line
        if os.environ.get("NEWSLORA_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(
            f"newslora: internal error: {type(e).__name__}: {first} "
            "(NEWSLORA_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
