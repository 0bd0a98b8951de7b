"""What a GPU session runs: the jobs, their sizes on a GPU and in a dry run on a CPU, and each
job's commands. gpu_session.py carries the parts and runs these (`run JOB ...`).
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# accuracy rows (issue 10), by job: the recipe and its levers; newslora runs' adapters come back
# On the first GPU session's machine a step cost ~150-230 ms at any batch up to 1,024, so the
# recipe's batch 32 (8,052 MPNet steps, ~30 min) does not fit a session; batch 128 (~8 min) does.
# lr scaled by the square root of the batch. At batch 256 (lr 1.4e-3) MiniLM lost 0.45
# validation points on CPU (benchmarks/README.md); 128 is not measured there.
GPU_BATCH = ["train.batch_size=128", "train.lr=1e-3"]
ACCURACY_JOBS = {
    "accuracy": ("newslora", GPU_BATCH),
    "accuracy-full": ("full", []),
    "accuracy-seed000": ("seed000", []),
    "accuracy-distill": ("newslora", ["train.teacher={full}"]),  # taught by accuracy-full's run
}
JOBS = (*ACCURACY_JOBS, "merge", "profile", "speed", "speed-levers", "torchrun")
# The jobs' sizes. GPU: what the issues ask for. SMOKE: the same commands, small, on a CPU (a
# dry run that catches a broken step before it costs device minutes).
GPU = {
    "encoder": "mpnet", "rows": 0, "val_rows": 2000,  # the whole train pool
    "epochs": {"newslora": 3, "full": 3, "seed000": 8},  # seed 000 ran ~8-11, at lr 2e-5
    "merge": ["--precision", "fp32,bf16"],
    # the acceptance rows first (seed vs newslora, MFU at batch >= 64); scaling when time allows.
    # 2026-12-04 a step took ~150 ms at any batch up to 1,024 (MiniLM): big batches, whole pool
    "speed": ["--gpu", "--seed-steps", "61", "--scale-rows", "1000,10000,90000",
              "--only", "seed,newslora,batches", "--batch-sizes", "1024,4096",
              "--batch-rows", "90000"],
    # against the launch-bound step, at the recipe's batch (RoBERTa-base first): CUDA graphs,
    # the host's share (numpy padding; no loader workers), peft's input casts (launches), and
    # last the host's allocator (the carried tcmalloc against glibc's malloc)
    "speed-levers": ["--gpu", "--only", "levers", "--levers",
                     "baseline,numpy-collator,collate-in-loop,compile-graphs,peft-input-cast,"
                     "system-malloc", "--rows", "10000"],
    # where a step's ~145 ms go (benchmarks/step_profile.py), both encoders: ~1-2 min
    "profile": ["--gpu", "--batches", "32,1024"],
    "torchrun_steps": 60,
}  # fmt: skip
SMOKE = {
    "encoder": "minilm", "rows": 1000, "val_rows": 200,
    "epochs": {"newslora": 0.1, "full": 0.1, "seed000": 0.1},
    "merge": ["--precision", "fp32", "--rows", "300"],
    "speed": ["--rows", "200", "--seed-steps", "3", "--only", "seed,newslora,batches",
              "--batch-sizes", "16", "--batch-rows", "300"],
    "speed-levers": ["--only", "levers", "--levers", "baseline", "--rows", "200"],
    "profile": ["--batches", "16", "--warmup", "4", "--steps", "2"],
    "torchrun_steps": 5,
}  # fmt: skip


def needs(job, size):
    return size["encoder"] if job in (*ACCURACY_JOBS, "merge") else "minilm"


def job_commands(job, out, env, size, home):
    """The job's commands; rows go to `out`, run folders that need not come back to `home`."""
    py, bench = sys.executable, REPO / "benchmarks"
    runs = REPO / "benchmarks" / "runs"
    from accuracy import run_name

    encoder, rows = size["encoder"], size["rows"]

    def name(recipe, sets=()):  # accuracy.py's folder for the row, seed 1
        return run_name(encoder, recipe, rows, size["epochs"][recipe], list(sets), 1)

    if job in ACCURACY_JOBS:  # issue 10: a recipe on MPNet-base, the whole pool
        recipe, sets = ACCURACY_JOBS[job]
        sets = [s.format(full=f"benchmarks/runs/{name('full')}") for s in sets]
        acc = [py, bench / "accuracy.py", "--encoders", encoder, "--recipes", recipe]
        acc += ["--rows", rows, "--val-rows", size["val_rows"], "--seeds", "1"]
        acc += ["--epochs", size["epochs"][recipe], *(x for s in sets for x in ("--set", s))]
        acc += ["--no-tfidf", "--out", out / "accuracy.json"]
        if recipe != "newslora":
            return [acc]
        tar = ["tar", "czf", out / f"{name(recipe, sets)}.tar.gz", "-C", runs]
        return [acc, [*tar, "--exclude=checkpoints", name(recipe, sets)]]
    if job == "merge":  # issue 11: merged vs unmerged labels, fp32 and bf16
        run = runs / name(*ACCURACY_JOBS["accuracy"])  # the `accuracy` job's run
        merge = [py, bench / "merge_agreement.py", run, *size["merge"]]
        return [[*merge, "--out", out / "merge.json"]]
    if job in ("speed", "speed-levers"):  # issue 11: RoBERTa-base (random weights), MiniLM-L6
        return [[py, bench / "speed.py", *size[job], "--precision", "auto", "--results", out]]
    if job == "profile":  # issue 11: the phases, kernels and syncs of a training step
        return [[py, bench / "step_profile.py", *size[job], "--results", out]]
    if job == "torchrun":  # the shipped CLI under torchrun on this machine, unchanged
        run = home / "runs" / "torchrun"
        train = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
        train += ["-m", "newslora", "train", REPO / "configs" / "demo.toml"]
        train += [f"model.name={env['NEWSLORA_MINILM']}", f"train.output_dir={run}"]
        train += [f"train.max_steps={size['torchrun_steps']}", "data.max_train_rows=4000"]
        return [train, ["cp", run / "train_summary.json", out / "torchrun_summary.json"]]
    raise SystemExit(f"unknown job {job!r}; jobs: {', '.join(JOBS)}")
