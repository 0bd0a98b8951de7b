"""Experiments on newslora's training speed, run in-process on its own `train.Recipe` with one
change each; src/newslora is not modified (the lead decides what to adopt).

  baseline         the shipped path: model.attention = "auto" (eager on CPU, transformers'
                   default on GPU), optim="adamw_torch_fused" (transformers 5's default on
                   torch >= 2.8) and, under bf16, the frozen base's linear weights stored
                   in bf16, cast once (train.bf16_base, the default again since 2026-12-07)
  fp32-base        train.bf16_base=false: under bf16 the frozen base left fp32, autocast
                   casting its weights in every forward pass (the default 2026-12-02..06;
                   the rows of that time measured the other way round, as `bf16-base`)
  fp32-trunk       train.bf16_trunk=false: the frozen embeddings and LayerNorms left fp32, so
                   that the hidden states go to fp32 at every residual add and LayerNorm
                   (the default until 2026-12-07; the rows of that day before the switch
                   measured the other way round, as `bf16-trunk`, casting the same modules
                   in this script before the setting existed)
  unfused-lora     train.fused_lora=false: peft's own LoRA forward, B's product, the scaling
                   and the sum with the frozen layer's output as three passes, not one addmm
  eager-attention  model.attention = "eager"
  sdpa-attention   model.attention = "sdpa" (PyTorch's scaled_dot_product_attention)
  adamw-foreach    optim="adamw_torch": the multi-tensor AdamW, i.e. fused AdamW turned off
  torch-compile    TrainingArguments(torch_compile=True): inductor on CPU
  compile-dynamic  torch-compile with every dimension dynamic from the first step
                   (torch._dynamo.config.assume_static_by_default = False), meant to
                   compile once for all lengths instead of three times; on 2026-12-07 it
                   still compiled twice and its steps were no faster than eager
  batch-64         train.batch_size=64: the batch of the issue's GPU utilisation goal
  batch-256        train.batch_size=256 (the demo's is 32): fewer, larger matrix products
                   per row; its accuracy is a question for benchmarks/accuracy.py
  compile-graphs   torch_compile with mode "reduce-overhead" (CUDA graphs: one launch replays
                   a step's kernels) and batches padded to a multiple of 16, so that a few
                   shapes are compiled, not one per length. For GPUs, where a step cost
                   ~150 ms at any batch up to 1,024 (2026-12-04, H200): launch-bound
  collate-in-loop  train.loader_workers=0: batches fetched and padded in the training
                   process, not in loader workers (on CPU that is already the default).
                   Its lever_ab rows of 2026-12-04 were taken when src/ padded with
                   PadCollator: there, this lever also swapped in DataCollatorWithPadding
  numpy-collator   collate.PadCollator (numpy padding, the same tensors) instead of
                   transformers' DataCollatorWithPadding: 14x less host time a batch of 1,024
                   (results/collate.md), no difference end to end on CPU; for GPUs
  encoder-dropout-0  model.dropout=0: the encoder's own hidden and attention dropout off
                   while training (on CPU, drawing their masks took over a quarter of a
                   step: results/step_profile.md); its accuracy is a question for accuracy.py
  peft-input-cast  peft's cast of an adapted layer's input to the adapter's dtype kept on
                   (peft's default; since 2026-12-05 newslora's training turns it off under
                   autocast, newslora.train.adapter_input_casts): a bf16 input goes to
                   fp32 and back to bf16 before LoRA's A. The lever_ab row of 2026-12-05
                   was taken before that change, as `baseline lora-input-cast-off`
  host-threads     torch's own thread count (the cores it sees), not newslora's: the CLI
                   caps threads to a container's CPU quota (newslora.machine.fit_threads),
                   which torch does not read; for `lever_ab.py --cpu-quota`
  system-malloc    NEWSLORA_MALLOC=default: the system's malloc (glibc's), as before
                   2026-12-05. Since then the CLI, and these scripts as it does, start over
                   with tcmalloc preloaded where it is installed (newslora.machine)
  omp-bind         OMP_PROC_BIND=close OMP_PLACES=cores: each of torch's OpenMP threads
                   pinned to a core, so the kernel does not move them between cores
  omp-passive      OMP_WAIT_POLICY=PASSIVE: an OpenMP thread with no work sleeps at once
                   instead of spinning (GNU OpenMP spins ~300,000 turns first), leaving the
                   core to the training process's serial work
  eval-pass        no training: one pass over the validation rows as the Recipe evaluates
                   (trainer.predict on the length-sorted set, in order), timed
  eval-pass-grouped  the same pass with transformers' own evaluation sampler, which applies
                   group_by_length to evaluation too (the path before RecipeTrainer)

Each trains one epoch over the rows given (or times one pass) and writes its step records:

    python benchmarks/speed_levers.py LEVER --out result.json section.key=value ...

Run by benchmarks/speed.py (`--only levers`), which turns the records into speed.json rows.
"""

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from types import MethodType

from newslora.machine import allocator, fit_process

script = __name__ == "__main__"  # imported by a test, this process never starts over
# levers that are environment variables, read once when the process or torch starts
ENV_LEVERS = {
    "system-malloc": {"NEWSLORA_MALLOC": "default"},
    "omp-bind": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "omp-passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
for name, env in ENV_LEVERS.items():
    if script and name in sys.argv:  # the lever: an argument of its own, not a path
        os.environ.update(env)
fit_process(restart=script)  # as newslora's CLI does, before torch starts
import torch  # noqa: E402
from transformers import DataCollatorWithPadding, Trainer  # noqa: E402

import newslora.train as newslora_train  # noqa: E402
from newslora.config import load_config  # noqa: E402
from newslora.train import Recipe, adapter_input_casts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from collate import PadCollator  # noqa: E402
from seed000_pipeline import StepClock, count_batches, step_records  # noqa: E402

LEVERS = {
    "baseline": {},
    "fp32-base": {"overrides": ["train.bf16_base=false"]},
    "fp32-trunk": {"overrides": ["train.bf16_trunk=false"]},
    "unfused-lora": {"overrides": ["train.fused_lora=false"]},
    "eager-attention": {"overrides": ["model.attention=eager"]},
    "sdpa-attention": {"overrides": ["model.attention=sdpa"]},
    "adamw-foreach": {"args": {"optim": "adamw_torch"}},
    "torch-compile": {"args": {"torch_compile": True}},
    "compile-dynamic": {"args": {"torch_compile": True}, "dynamic": True},
    "batch-64": {"overrides": ["train.batch_size=64"]},
    "batch-256": {"overrides": ["train.batch_size=256"]},
    "compile-graphs": {
        "args": {"torch_compile": True, "torch_compile_mode": "reduce-overhead"},
        "pad_to": 16,
    },
    "collate-in-loop": {"overrides": ["train.loader_workers=0"]},
    "numpy-collator": {"numpy_collator": True},
    "encoder-dropout-0": {"overrides": ["model.dropout=0"]},
    "peft-input-cast": {"peft_cast": True},
    "host-threads": {"host_threads": True},
    "system-malloc": {},  # ENV_LEVERS: applied before torch starts, at the top of this file
    "omp-bind": {},
    "omp-passive": {},
    "eval-pass": {"eval_only": True},
    "eval-pass-grouped": {"eval_only": True, "grouped_eval": True},
}


def with_training_args(changes):
    """The Recipe's own TrainingArguments, plus `changes` (this process only)."""
    base = newslora_train.TrainingArguments
    newslora_train.TrainingArguments = lambda **kwargs: base(**kwargs | changes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lever", choices=sorted(LEVERS))
    parser.add_argument("--out", required=True)
    parser.add_argument("overrides", nargs="*", help="section.key=value on configs/demo.toml")
    args = parser.parse_intermixed_args()
    lever = LEVERS[args.lever]
    if lever.get("host_threads"):
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    if "args" in lever:
        with_training_args(lever["args"])
    if lever.get("dynamic"):
        torch._dynamo.config.assume_static_by_default = False
    overrides = [*args.overrides, *lever.get("overrides", [])]
    recipe = Recipe(load_config(REPO / "configs" / "demo.toml", overrides)).setup()
    base = recipe.model.get_base_model()
    trainer = recipe.trainer
    if lever.get("pad_to"):
        trainer.data_collator = DataCollatorWithPadding(
            recipe.tokenizer, pad_to_multiple_of=lever["pad_to"]
        )
    if lever.get("numpy_collator"):
        trainer.data_collator = PadCollator(recipe.tokenizer)
    if lever.get("grouped_eval"):
        trainer._get_eval_sampler = MethodType(Trainer._get_eval_sampler, trainer)
    result = {
        "lever": {
            "attention": base.config._attn_implementation,
            "optim": str(trainer.args.optim),
            "torch_compile": trainer.args.torch_compile,
            "bf16_base": recipe.cfg.train.bf16_base,
            "bf16_trunk": recipe.cfg.train.bf16_trunk,
            "fused_lora": recipe.cfg.train.fused_lora,
            "collator": type(trainer.data_collator).__name__,
            "loader_workers": trainer.args.dataloader_num_workers,
            "peft_input_cast": bool(lever.get("peft_cast")),
            "torch_threads": torch.get_num_threads(),
            # with the above, what tells a lever from the baseline (speed_tables.same_settings)
            "compile_mode": trainer.args.torch_compile_mode,
            "compile_dynamic": bool(lever.get("dynamic")),
            "batch_size": trainer.args.per_device_train_batch_size,
            "pad_to": lever.get("pad_to"),
            "encoder_dropout": recipe.cfg.model.dropout,
            "malloc": allocator(),
            "env": {k: os.environ[k] for e in ENV_LEVERS.values() for k in e if k in os.environ},
        }
    }
    if lever.get("eval_only"):
        start = time.perf_counter()
        trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")
        result |= {"eval_rows": len(trainer.eval_dataset), "eval_s": time.perf_counter() - start}
        result["note"] = f"one validation pass: {result['eval_s']:.1f} s"
    else:
        clock, counts = StepClock(), []
        trainer.add_callback(clock)
        count_batches(trainer, counts)
        # as Recipe.train runs, unless the lever keeps peft's casts
        keep = lever.get("peft_cast")
        with nullcontext() if keep else adapter_input_casts(recipe.cfg, recipe.model):
            trainer.train()
        result["steps"] = step_records(clock, counts)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
