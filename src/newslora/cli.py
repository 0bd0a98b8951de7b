"""Command line: `newslora train | evaluate | predict | budget | plot`.

User errors (bad files, rows, configs, over budget) print one line and exit with status 2.
"""

import argparse
import os
import socket
import sys
import warnings

from newslora import NewsloraError, __version__


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
    recipe = Recipe(cfg).setup()
    print(
        f"training {cfg.model.name}: {len(recipe.train_df):,} rows "
        f"(+{len(recipe.val_df):,} validation), {recipe.count.trainable:,} trainable parameters"
    )
    recipe.train(resume=args.resume).save()
    if recipe.trainer.is_world_process_zero():
        print(
            f"val accuracy {100 * recipe.val_metrics['eval_accuracy']:.2f}% | "
            f"{recipe.wall_s:.0f} s | run saved to {recipe.run_dir}"
        )


def cmd_evaluate(args):
    from newslora.evaluate import evaluate_run

    m = evaluate_run(args.run_dir, args.data, args.out, allow_pickle=args.allow_pickle)
    print(
        f"{m['data']}: {m['rows']:,} rows | accuracy {100 * m['accuracy']:.2f}% | "
        f"macro-F1 {100 * m['macro_f1']:.2f}% | {m['samples_per_s']:.0f} rows/s"
    )
    for name, c in m["per_class"].items():
        print(
            f"  {name:<12} precision {100 * c['precision']:6.2f}  recall "
            f"{100 * c['recall']:6.2f}  f1 {100 * c['f1']:6.2f}  n={c['support']}"
        )


def cmd_predict(args):
    from newslora.predict import predict_run

    table = predict_run(
        args.run_dir,
        args.input,
        args.output,
        allow_pickle=args.allow_pickle,
        batch_size=args.batch_size,
    )
    counts = table["Label"].value_counts().sort_index().to_dict()
    print(f"wrote {len(table):,} predictions to {args.output} (per label: {counts})")


def cmd_budget(args):
    from newslora.budget import check_budget, count_config, plan, plan_report, report, resolve_rank
    from newslora.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.plan:
        print(plan_report(cfg, *plan(cfg)))
        return
    cfg = resolve_rank(cfg)
    count = count_config(cfg)
    print(report(cfg, count))
    check_budget(count, cfg.train.budget)


def cmd_augment(args):
    from newslora.augment import SynonymConfig, clean_file, synonyms_file
    from newslora.config import load_config

    data_cfg = load_config(args.config).data
    if args.step == "clean":
        table = clean_file(data_cfg, args.input, args.output, allow_pickle=args.allow_pickle)
    else:
        syn = SynonymConfig(
            rate=args.rate,
            max_replacements=args.max_replacements,
            insert_rate=args.insert,
            swap_rate=args.swap,
            delete_rate=args.delete,
            copies=args.copies,
            seed=args.seed,
        )
        table = synonyms_file(data_cfg, args.input, args.output, syn, args.keep_original)
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
    from newslora.config import load_config

    data_cfg = load_config(args.config).data
    _print_verdict(
        filter_file(data_cfg, args.input, args.output, args.run, args.threshold), args.output
    )


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
    from newslora.config import load_config

    cfg = load_config(args.config, args.overrides)
    report = self_train(cfg, args.corpus, args.output_dir, args.run, args.rounds, args.threshold)
    for r in report["rounds"]:
        print(
            f"round {r['round']}: +{r['rows_added']:,} pseudo-labelled rows "
            f"{r['added_per_class']}, val accuracy {100 * r['val_accuracy']:.2f}% -> {r['run']}"
        )
    if "stopped" in report:
        print(f"stopped: {report['stopped']}")


def cmd_plot(args):
    from newslora.plots import plot_curves

    for path in plot_curves(args.run_dir):
        print(path)


def _judge_args(parser, run_help):
    """--run and --threshold: the classifier whose calibrated confidence decides what is kept."""
    parser.add_argument("--run", required=True, help=run_help)
    parser.add_argument("--threshold", type=float, default=0.9, help="minimum confidence kept")


PICKLE_HELP = (
    "allow .pkl input (a pickled Hugging Face Dataset, as the competition ships): "
    "unpickling runs code from the file, so only use it on files you trust"
)


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

    p = sub.add_parser("evaluate", help="metrics of a run on a labelled set")
    p.add_argument("run_dir")
    p.add_argument("--data", help="labelled file or Hub id:split (default: the config's data.test)")
    p.add_argument("--out", help="metrics JSON path (default RUN_DIR/metrics.json)")
    p.add_argument("--allow-pickle", action="store_true", help=PICKLE_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="write an ID,Label CSV for a file of texts")
    p.add_argument("run_dir")
    p.add_argument("input", help="CSV/Parquet/JSONL with a text column (or .pkl, see below)")
    p.add_argument("output", help="CSV to write: ID,Label (ID from an `id` column, else 0..n-1)")
    p.add_argument("--allow-pickle", action="store_true", help=PICKLE_HELP)
    p.add_argument("--batch-size", type=int, help="rows per batch (default train.eval_batch_size)")
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

    p = sub.add_parser("augment", help="write an augmented dataset file (CSV or Parquet)")
    steps = p.add_subparsers(dest="step", required=True)
    for step, help_text in (
        ("clean", "repair AG News escapes and whitespace (idempotent)"),
        ("synonyms", "WordNet synonym replacement, EDA-style, seeded"),
    ):
        s = steps.add_parser(step, help=help_text)
        s.add_argument("input", help="labelled or unlabelled data file")
        s.add_argument("output", help="CSV or .parquet to write (text, label, source[, origin])")
        s.add_argument("--config", help="take labels and text columns from this config")
        s.set_defaults(func=cmd_augment)
    s = steps.add_parser(
        "generate",
        help="adapt a causal LM to unlabelled texts, write rows "
        "per class, keep those a trained run agrees with (config [generate])",
    )
    s.add_argument("config", help="TOML config with a [generate] section (see configs/)")
    s.add_argument("output", help="CSV or .parquet of kept rows; .scored.csv, .report.json beside")
    s.add_argument("overrides", nargs="*", help="section.key=value, e.g. generate.per_class=50")
    s.set_defaults(func=cmd_generate)
    s = steps.add_parser(
        "filter",
        help="keep labelled rows (e.g. generated) that a trained run assigns to their own "
        "label with calibrated confidence >= threshold",
    )
    s.add_argument("input", help="labelled data file (text, label)")
    s.add_argument("output", help="CSV or .parquet of kept rows; .scored.csv, .report.json beside")
    _judge_args(s, "the trained run that judges the rows")
    s.add_argument("--config", help="take labels and text columns from this config")
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
    _judge_args(s, "the trained run that labels round 1")
    s.add_argument("--rounds", type=int, default=1, choices=(1, 2, 3))
    s.set_defaults(func=cmd_pseudo)
    p_clean, p_syn = steps.choices["clean"], steps.choices["synonyms"]
    p_clean.add_argument("--allow-pickle", action="store_true", help=PICKLE_HELP)
    p_syn.add_argument("--rate", type=float, default=0.1, help="share of eligible words replaced")
    p_syn.add_argument("--max-replacements", type=int, default=5, help="per text")
    p_syn.add_argument("--insert", type=float, default=0.0, help="EDA random insertion rate")
    p_syn.add_argument("--swap", type=float, default=0.0, help="EDA random swap rate")
    p_syn.add_argument("--delete", type=float, default=0.0, help="EDA random deletion chance")
    p_syn.add_argument("--copies", type=int, default=1, help="augmented copies per row")
    p_syn.add_argument("--seed", type=int, default=0)
    p_syn.add_argument("--keep-original", action="store_true", help="also write the input rows")

    p = sub.add_parser("plot", help="loss/accuracy curves and confusion matrix as PNG")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides may come after a flag: `budget CONFIG --plan lora.r=8`
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    warnings.filterwarnings("ignore", category=FutureWarning)
    _use_offline_mode_if_hub_unreachable()
    try:
        args.func(args)
    except NewsloraError as e:
        print(f"newslora: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
