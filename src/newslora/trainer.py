"""The Trainer as the recipe runs it: validation evaluated in its stored order, FLOPs counted
without walking the parameters at every step, and every evaluation's logits kept, so the best
checkpoint's figures and the confidence temperature need no second pass."""

import signal
import sys
import threading
from pathlib import Path

import numpy as np
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback

from newslora.distill import DistillTrainer


def accuracy(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


class RecipeTrainer(Trainer):
    """The Trainer, evaluating validation in its stored order (sorted by length, so each batch
    pads to its own longest row). transformers applies `group_by_length` to evaluation too,
    and on a validation set under 4 batches x 50 its "megabatches" are one batch each: every
    batch is then a random draw padded to its longest row, and a pass took twice as long
    (benchmarks/results/speed.md, eval-pass levers)."""

    def _get_eval_sampler(self, eval_dataset):
        if self.args.world_size > 1:  # distributed: the Trainer's own sharding
            return super()._get_eval_sampler(eval_dataset)
        return SequentialSampler(eval_dataset)

    def floating_point_ops(self, inputs):
        """transformers' `total_flos` count, the parameters counted once, not at every step
        (1.27 -> 0.11 ms per profiled MiniLM step, benchmarks/results/step_profile.md; on a
        GPU the host's time is the step's floor)."""
        main = getattr(self.model, "main_input_name", "input_ids")
        if main not in inputs or not hasattr(self.model, "num_parameters"):
            return super().floating_point_ops(inputs)
        if getattr(self, "_flops_per_token", None) is None:
            self._flops_per_token = 6 * self.model.num_parameters(exclude_embeddings=True)
        return self._flops_per_token * inputs[main].numel()


class DistillRecipeTrainer(RecipeTrainer, DistillTrainer):
    """RecipeTrainer with the distillation loss (train.teacher)."""


class Evaluations(TrainerCallback):
    """The validation logits and metrics of every evaluation, by step: the best checkpoint's
    figures and the calibration temperature then need no second pass over validation."""

    def __init__(self):
        self.pending, self.by_step = None, {}

    def compute_metrics(self, eval_pred):
        self.pending = (eval_pred.predictions, eval_pred.label_ids)
        return accuracy(self.pending)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.pending is not None:
            self.by_step[state.global_step] = (*self.pending, dict(metrics or {}))
            self.pending = None

    def of_checkpoint(self, checkpoint):
        """(logits, labels, metrics) of `checkpoint-N`'s evaluation, or None (e.g. resumed)."""
        if not checkpoint:
            return None
        step = Path(checkpoint).name.rsplit("-", 1)[-1]
        return self.by_step.get(int(step)) if step.isdigit() else None


class StopOnInterrupt(TrainerCallback):
    """Ctrl-C (or SIGTERM, as schedulers and `docker stop` send) while training finishes the
    step, saves a checkpoint there and stops, so that `--resume` continues exactly (a
    KeyboardInterrupt mid-step loses every step since the last checkpoint). A second signal
    stops at once. One process only: under torchrun the ranks could stop at different steps
    and wait on each other for ever."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum, self.stopped, self.previous, self.saved_at = None, False, {}, None

    def on_train_begin(self, args, state, control, **kwargs):
        if args.world_size == 1 and threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._request) for s in self.SIGNALS}

    def _request(self, signum, frame):
        self.signum = signum
        self.restore()  # the next signal acts as it would without newslora
        print(
            f"\nnewslora: {signal.Signals(signum).name}: stopping after this step to save a "
            "checkpoint (again: at once)",
            file=sys.stderr,
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.signum:
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        self.saved_at = state.global_step

    def on_epoch_end(self, args, state, control, **kwargs):
        # the Trainer ends the epoch it broke out of: a save (unless this step's checkpoint is
        # written already), without the epoch's evaluation
        if self.signum and state.global_step < state.max_steps:
            control.should_save = self.saved_at != state.global_step
            control.should_evaluate, self.stopped = False, True

    def on_train_end(self, args, state, control, **kwargs):  # a Trainer run without the recipe
        self.restore()

    def restore(self):
        """The handlers as they were (also after a training that raised: no on_train_end)."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
