"""Train: one recipe, setup -> train -> save, on `transformers.Trainer`.

The Trainer gives us dynamic padding, length grouping, AdamW with warm-up and linear decay,
AMP, evaluation and checkpoints, best-model selection on validation accuracy, early stopping,
TensorBoard and exact resume; and, under `torchrun`/`accelerate launch`, data parallelism with
no code change. Only the main process writes the run directory.

Run directory:
  config.toml      the resolved config            adapter/      LoRA + head (+ tokenizer)
  train_summary.json  rows, params, val metrics, wall time
  history.json     every logged loss/accuracy      tensorboard/  event files
  checkpoints/     Trainer checkpoints for --resume   teacher_logits.npz  (train.teacher)
and, from `newslora evaluate` and `newslora plot`, files that describe one model (DERIVED):
a run that saves a new adapter removes them, so none can describe the model it replaced.
"""

import hashlib
import json
import os
import shutil
import time
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

import datasets
import torch
from datasets import Dataset
from peft.helpers import disable_input_dtype_casting
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
from transformers.integrations import TensorBoardCallback

from newslora import Interrupted, NewsloraError, warn
from newslora.budget import check_budget, count_config, count_parameters, resolve_rank
from newslora.config import save_config
from newslora.data import load_with_config
from newslora.distill import TEACHER_CACHE, TEACHER_COLUMN, teacher_logits
from newslora.files import atomic_path, writable_dir, write_json
from newslora.fused import fuse_lora_add
from newslora.model import (
    autocast_dtype,
    build_model,
    device_name,
    load_tokenizer,
    peak_gpu_mb,
    save_model,
    store_frozen,
    warm_start,
)
from newslora.predict import fit_temperature, run_config
from newslora.splits import held_out_texts, split_train_val, training_rows
from newslora.trainer import DistillRecipeTrainer, Evaluations, RecipeTrainer, StopOnInterrupt

datasets.disable_progress_bars()  # the Trainer's own bar is the one to watch
# train.schedule -> transformers' scheduler; each starts with train.warmup_ratio of warm-up
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def tokenize(df, tokenizer, max_length):
    """Token ids without padding (the collator pads each batch to its own longest row)."""
    ds = Dataset.from_pandas(df[["text", "label"]].rename(columns={"label": "labels"}))
    ds = ds.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )
    return ds.map(lambda b: {"length": [len(x) for x in b["input_ids"]]}, batched=True)


def loader_workers(setting):
    """train.loader_workers, -1 resolved: 2 on a GPU, 0 (the training process) on CPU."""
    if setting >= 0:
        return setting
    return 2 if torch.cuda.is_available() else 0


def precision_flags(precision):
    """Mixed precision for the Trainer: bf16 autocast on GPUs and on CPUs with bf16 units."""
    dtype = autocast_dtype(precision)
    flags = {"use_cpu": not torch.cuda.is_available()}
    if dtype is torch.bfloat16:
        flags["bf16"] = True
    elif dtype is torch.float16:
        flags["fp16"] = True
    return flags


def adapter_input_casts(cfg, model):
    """The context training runs in. Under autocast peft casts a bf16 input of an adapted layer
    to the adapter's fp32, and autocast casts it back to bf16 for LoRA's A. Without LoRA
    dropout (which would then scale in bf16) skipping that round trip gives the same bits,
    1.03x as fast on CPU (benchmarks/README.md, "Speed against the seed's pipeline")."""
    skip = autocast_dtype(cfg.train.precision) is not None and cfg.lora.dropout == 0
    return disable_input_dtype_casting(model, active=skip)


class Recipe:
    """setup() loads data and model and checks the budget; train() runs; save() writes the run."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.run_dir = Path(cfg.train.output_dir)

    def setup(self, resume=False):
        if resume:  # lora.r = "auto" was resolved once, at the start: keep that number
            self.cfg = _stored_rank(self.cfg, self.run_dir / "checkpoints" / RUN_STATE)
        real = self._training_file()
        self.cfg = cfg = resolve_rank(self.cfg)  # lora.r = "auto" -> a number, saved as such
        check_budget(count_config(cfg), cfg.train.budget)  # refuse before loading any weights
        set_seed(cfg.train.seed)
        real, self.val_df = split_train_val(real, cfg.data)
        test_texts, why = held_out_texts(cfg.data)
        if test_texts is None:
            warn(f"training rows not checked against the test set: {why}")
        self.train_df, self.sources = training_rows(real, self.val_df, cfg.data, test_texts)
        self.resume = resume
        self.state = {"config": cfg.to_dict(), "data": fingerprint(self.train_df, self.val_df)}
        if resume:  # refuse before loading any weights
            _check_same_run(self.run_dir / "checkpoints", self.state)
        writable_dir(self.run_dir)  # made now: the Trainer would fail there much later
        self.tokenizer = load_tokenizer(cfg.model.name)
        if cfg.model.max_length > self.tokenizer.model_max_length:  # positions past it: no such
            limit = f"{cfg.model.name} reads {self.tokenizer.model_max_length} tokens at most"
            raise NewsloraError(f"config: 'model.max_length' = {cfg.model.max_length}: {limit}")
        self.model = build_model(cfg)
        if cfg.train.init_from and not resume:  # a resume restores its own checkpoint
            self._warm_start()
        if cfg.train.bf16_base and autocast_dtype(cfg.train.precision) is torch.bfloat16:
            store_frozen(self.model, torch.bfloat16, trunk=cfg.train.bf16_trunk)
        if cfg.train.fused_lora:
            fuse_lora_add(self.model)
        self.count = count_parameters(self.model)
        check_budget(self.count, cfg.train.budget)
        self.evaluations, self.interrupt = Evaluations(), StopOnInterrupt()
        self.trainer = self._trainer_class()(
            model=self.model,
            args=self._training_args(),
            train_dataset=self._train_dataset(),
            # sorted by length: each eval batch pads to its own longest row (5x faster on CPU)
            eval_dataset=tokenize(self.val_df, self.tokenizer, cfg.model.max_length).sort("length"),
            processing_class=self.tokenizer,
            compute_metrics=self.evaluations.compute_metrics,
            callbacks=[self.evaluations, self.interrupt, *self._callbacks()],
        )
        return self

    def _training_file(self):
        """data.train, read; data.labels left at AG News' four becomes the file's own classes
        where it is labelled in others (the run saves them: evaluate and predict read them)."""
        data = self.cfg.data
        real = load_with_config(data, data.train, own_labels=True)
        self.cfg = replace(self.cfg, data=replace(data, labels=real.attrs["labels"]))
        return real

    def _warm_start(self):
        """train.init_from: that run's adapter and head replace the fresh ones."""
        run = Path(self.cfg.train.init_from)
        if self.cfg.lora.full_finetune:
            raise NewsloraError("train.init_from: starts LoRA runs only, not lora.full_finetune")
        source, mine = run_config(run).to_dict(), self.cfg.to_dict()
        # dropout does not change the weights' shape or meaning; every other field would
        same = {"model": ("name", "head"), "lora": [k for k in mine["lora"] if k != "dropout"]}
        changed = [
            f"{s}.{k}" for s, keys in same.items() for k in keys if source[s][k] != mine[s][k]
        ]
        if changed:
            raise NewsloraError(
                f"train.init_from: {run} was trained with other {', '.join(changed[:4])}"
            )
        warm_start(self.model, run / "adapter")
        state = run / "checkpoints" / RUN_STATE
        if not state.is_file() or json.loads(state.read_text())["data"] != self.state["data"]:
            warn(f"train.init_from: {run} may have trained on other rows (validation may overlap)")

    def _train_dataset(self):
        data = tokenize(self.train_df, self.tokenizer, self.cfg.model.max_length)
        if not self.cfg.train.teacher:
            return data
        t, labels, texts = self.cfg.train, self.cfg.data.labels, self.train_df["text"]
        logits = teacher_logits(t.teacher, labels, texts, self.run_dir / TEACHER_CACHE)
        return data.add_column(TEACHER_COLUMN, logits.tolist())

    def _trainer_class(self):
        t = self.cfg.train
        if not t.teacher:
            return RecipeTrainer
        return partial(
            DistillRecipeTrainer, alpha=t.distill_alpha, temperature=t.distill_temperature
        )

    def _training_args(self):
        t = self.cfg.train
        strategy = "steps" if t.eval_every > 0 else "epoch"
        workers = loader_workers(t.loader_workers)
        if workers:  # forked after tokenizing; they never tokenize: no fork warning, please
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return TrainingArguments(
            output_dir=str(self.run_dir / "checkpoints"),
            num_train_epochs=t.epochs,
            max_steps=t.max_steps,
            per_device_train_batch_size=t.batch_size,
            per_device_eval_batch_size=t.eval_batch_size,
            learning_rate=t.lr,
            weight_decay=t.weight_decay,
            label_smoothing_factor=t.label_smoothing,
            warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
            lr_scheduler_type=SCHEDULES[t.schedule],
            eval_strategy=strategy,
            save_strategy=strategy,
            eval_steps=t.eval_every or None,
            save_steps=t.eval_every or None,
            logging_steps=t.logging_steps,
            dataloader_num_workers=workers,
            dataloader_persistent_workers=workers > 0,
            # on (the default), the Trainer reads every step's loss back to test it for nan/inf:
            # on a GPU a sync per step that stalls the kernel queue. Off, a nan loss is logged
            # as nan rather than hidden in the average.
            logging_nan_inf_filter=False,
            load_best_model_at_end=True,
            metric_for_best_model="accuracy",
            greater_is_better=True,
            save_total_limit=t.save_total_limit,
            seed=t.seed,
            data_seed=t.seed,
            train_sampling_strategy="group_by_length" if t.group_by_length else "random",
            report_to="none",  # TensorBoard is added as a callback with our own folder
            remove_unused_columns=not t.teacher,  # it would drop the teacher's logits
            **precision_flags(t.precision),
        )

    def _callbacks(self):
        # each invocation gets its own folder: a rerun's curves never land on the old ones
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        tensorboard = TensorBoardCallback()
        tensorboard.logging_dir = str(self.run_dir / "tensorboard" / stamp)
        callbacks = [tensorboard]
        if self.cfg.train.early_stopping > 0:
            callbacks.append(EarlyStoppingCallback(self.cfg.train.early_stopping))
        return callbacks

    def train(self):
        checkpoints = self.run_dir / "checkpoints"
        if not self.resume and self.trainer.is_world_process_zero():
            # A fresh run must not rotate or resume another run's checkpoints. The previous
            # run's outputs (adapter/, config.toml, ...) stay until save() replaces them.
            shutil.rmtree(checkpoints, ignore_errors=True)
            checkpoints.mkdir(parents=True)
            write_json(checkpoints / RUN_STATE, self.state)
        start = time.perf_counter()
        try:
            with adapter_input_casts(self.cfg, self.model):
                resume = True if self.resume else None
                self.result = self.trainer.train(resume_from_checkpoint=resume)
        finally:
            self.interrupt.restore()
        self.wall_s = time.perf_counter() - start
        if self.interrupt.stopped:
            state = self.trainer.state
            raise Interrupted(
                f"interrupted at step {state.global_step:,} of {state.max_steps:,}; its "
                f"checkpoint is in {checkpoints}: the same command with --resume continues",
                status=128 + self.interrupt.signum,
            )
        # The best checkpoint (loaded by now) was evaluated during training: its logits give
        # the metrics and the confidence temperature. Only when that evaluation is not in
        # memory (a resumed run's earlier epochs) is validation predicted once more.
        best = self.evaluations.of_checkpoint(self.trainer.state.best_model_checkpoint)
        if best is None:
            val = self.trainer.predict(self.trainer.eval_dataset, metric_key_prefix="eval")
            best = (val.predictions, val.label_ids, val.metrics)
        logits, labels, self.val_metrics = best
        self.temperature = fit_temperature(logits, labels)
        return self

    def save(self):
        if not self.trainer.is_world_process_zero():
            return self
        cfg, state = self.cfg, self.trainer.state
        with atomic_path(self.run_dir / "adapter", is_dir=True) as tmp:
            save_model(self.trainer.model, self.tokenizer, tmp)
        stale = [name for name in DERIVED if (self.run_dir / name).is_file()]
        for name in stale:  # an export's model card would read the old model's metrics
            (self.run_dir / name).unlink()
        if stale:
            warn(f"{self.run_dir}: removed {', '.join(stale)}, which described the model before")
        save_config(cfg, self.run_dir / "config.toml")
        write_json(self.run_dir / "history.json", state.log_history)
        write_json(
            self.run_dir / "train_summary.json",
            {
                "model": cfg.model.name,
                "train_rows": len(self.train_df),
                "val_rows": len(self.val_df),
                "rows_by_source": self.train_df["source"].value_counts().to_dict(),
                "sources": self.sources,  # rows each file gave, duplicates and leaks dropped
                "trainable_params": self.count.trainable,
                "params": vars(self.count) | {"trainable": self.count.trainable},
                "val_accuracy": self.val_metrics["eval_accuracy"],
                "val_loss": self.val_metrics["eval_loss"],
                "temperature": self.temperature,  # confidence calibration, fitted on validation
                "best_checkpoint": state.best_model_checkpoint,
                "steps": state.global_step,
                "epochs": state.epoch,
                "wall_s": round(self.wall_s, 1),
                "train_samples_per_s": self.result.metrics.get("train_samples_per_second"),
                "device": device_name(),
                "precision": str(autocast_dtype(cfg.train.precision) or torch.float32).removeprefix(
                    "torch."
                ),
                "world_size": self.trainer.args.world_size,
                "peak_gpu_mb": peak_gpu_mb(),
                "teacher": self._teacher_summary(),
            },
        )
        return self

    def _teacher_summary(self):
        t = self.cfg.train
        if not t.teacher:
            return None
        summary = Path(t.teacher) / "train_summary.json"
        params = json.loads(summary.read_text())["trainable_params"] if summary.is_file() else None
        return {
            "run": t.teacher,
            "alpha": t.distill_alpha,
            "temperature": t.distill_temperature,
            "trainable_params": params,  # not counted toward this run's budget
        }


RUN_STATE = "run_state.json"  # the resolved config and data fingerprint checkpoints belong to
DERIVED = ("metrics.json", "confusion.png", "loss.png", "accuracy.png")  # evaluate's and plot's


def fingerprint(train_df, val_df):
    """sha256 of the training and validation rows (text and label), in order."""
    digest = hashlib.sha256()
    for df in (train_df, val_df):
        for text, label in zip(df["text"], df["label"], strict=True):
            digest.update(f"{label}\t{text}\n".encode())
        digest.update(b"--\n")
    return digest.hexdigest()


def _stored_rank(cfg, path):
    if cfg.lora.r != "auto" or not path.is_file():
        return cfg
    r = json.loads(path.read_text())["config"]["lora"]["r"]
    return replace(cfg, lora=replace(cfg.lora, r=r))


def _check_same_run(checkpoints, state):
    """--resume continues the same training: same resolved config, same rows."""
    if not any(checkpoints.glob("checkpoint-*")):
        raise NewsloraError(f"{checkpoints}: no checkpoint to resume from")
    path = checkpoints / RUN_STATE
    if not path.is_file():
        raise NewsloraError(f"{path}: missing; these checkpoints cannot be checked, start afresh")
    saved = json.loads(path.read_text())
    # a key the saved config lacks was added to newslora after it was written (e.g.
    # model.attention): not a change the user made, so it does not block the resume
    changed = [
        f"{section}.{key}"
        for section, values in state["config"].items()
        for key, value in values.items()
        if saved["config"].get(section, {}).get(key, value) != value
        and key not in ("output_dir", "loader_workers")  # where and how, not what, it trains
    ]
    if changed:
        raise NewsloraError(
            f"--resume: config differs from the checkpoint's ({', '.join(changed[:5])}); "
            "resume with the same config, or train afresh without --resume"
        )
    if saved["data"] != state["data"]:
        raise NewsloraError(
            "--resume: the training/validation rows differ from the checkpoint's "
            "(data file or split changed); train afresh without --resume"
        )
