"""The speed benchmark's pure parts: the seed's chunk padding and newslora's length-grouped
batches against the real tokenizer and sampler, token windows, the FLOP formula, the table,
and the skipping of measured rows. No timing is asserted."""

import argparse
import importlib
import sys

import pytest
import torch
from conftest import REPO, minilm_path
from transformers import AutoTokenizer, DataCollatorWithPadding


def _bench(name):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


report = _bench("speed_report")
tables = _bench("speed_tables")
collate = _bench("collate")


def test_chunk_padding_matches_the_seeds_map(pool):
    """The seed's `map(tokenize, batched=True)` with padding=True pads each row to the longest
    of its 1,000-row chunk: the model of it used for the report agrees with the real thing."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    texts = (pool["title"] + " " + pool["description"]).head(2500).tolist()
    real = [len(ids) for ids in tokenizer(texts, truncation=True)["input_ids"]]
    mapped = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], truncation=True, padding=True), batched=True
    )
    seeds = [len(ids) for ids in mapped["input_ids"]]
    assert seeds == report.chunk_padded(real)
    assert len(set(seeds)) == 3  # three chunks: 1,000 + 1,000 + 500 rows
    assert sum(map(sum, mapped["attention_mask"])) == sum(real)
    assert sum(seeds) > 3 * sum(real)  # AG texts: ~50 real tokens, padded to a long tail


def test_grouped_batches_are_the_samplers_and_cover_every_row():
    lengths = [5, 40, 7, 12, 33, 9, 21, 3, 18, 27, 14, 30, 6, 11]
    batches = report.grouped_batches(lengths, 4, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [len(b) for b in batches] == [4, 4, 4, 2]
    assert 1 in batches[0]  # transformers puts the longest row in the first batch
    sums = report.grouped_totals(lengths, 4, skip=1, draws=5)
    assert sums["samples"] == pytest.approx(len(lengths) - 4)
    assert sums["real"] < sums["padded"]
    same = report.grouped_totals([10] * 12, 4, skip=1, draws=3)
    assert same["real"] == same["padded"] == pytest.approx(80)  # nothing to pad
    # logged every 2 steps (a GPU's cadence): the window runs from step 2 to the last logged 2
    window = report.grouped_totals([10] * 14, 2, skip=2, stop=6, draws=3)
    assert window["samples"] == pytest.approx(8) and window["real"] == pytest.approx(80)


def test_window_leaves_out_the_warm_up_step():
    steps = [
        {"end_s": 5.0, "samples": 64, "real": 3000, "padded": 17000},
        {"end_s": 7.0, "samples": 64, "real": 3200, "padded": 17000},
        {"end_s": 9.0, "samples": 32, "real": 1600, "padded": 8000},
    ]
    rates = report.window([s["end_s"] for s in steps], report.totals(steps[1:]), warmup=1)
    assert rates["steps_timed"] == 2
    assert rates["seconds"] == pytest.approx(4.0)
    assert rates["samples_per_s"] == pytest.approx(96 / 4)
    assert rates["tokens_per_s"] == pytest.approx(4800 / 4)
    assert rates["padded_tokens_per_s"] == pytest.approx(25000 / 4)


def test_flop_formula():
    assert report.flops_per_token(10_000_000) == 40_000_000  # LoRA: frozen base, 4N
    assert report.flops_per_token(10_000_000, full_finetune=True) == 60_000_000
    # 1,000 padded tokens/s on N = 10M is 40 GFLOP/s: 40% of a 100 GFLOP/s matmul rate
    assert report.utilisation(report.flops_per_token(10_000_000) * 1000, 100e9) == 0.4


def _row(arm, precision, samples, predict, util=None, max_length=128):
    return {
        "arm": arm,
        "encoder": "minilm-l6",
        "device": "cpu (test)",
        "rows": 1000,
        "max_length": max_length,
        "precision": precision,
        "train_samples_per_s": samples,
        "train_tokens_per_s": samples * 50,
        "train_padded_tokens_per_s": samples * 60,
        "predict_rows_per_s": predict,
        "peak_mem_mb": 1000,
        "mfu": None,
        "cpu_matmul_utilisation": util,
        "matmul_gflops": 200.0,
        "command": "python benchmarks/speed.py",
    }


def test_table_ratios_and_upsert(tmp_path):
    path = tmp_path / "speed.json"
    seed = _row("seed000-pipeline", "fp32", 2.0, 16.0, max_length=512)
    tables.upsert(path, seed | {"batch_size": 64, "step_s": [40.0, 32.0]})
    tables.upsert(path, _row("newslora", "bf16", 10.0, 100.0, util=0.5))  # replaced below
    tables.upsert(path, _row("newslora", "bf16", 40.0, 400.0, util=0.3))
    rows = tables.upsert(path, _row("newslora", "fp32", 20.0, 200.0, util=0.2))
    assert len(rows) == 3 and tables.load_rows(path) == rows
    table = (tmp_path / "speed.md").read_text()
    assert "| newslora | minilm-l6 | 1,000 | 128 | bf16 | 40.00 | 2,000 | 2,400 | 60 |" in table
    assert "training **20.0x**, prediction **25.0x** (goal >= 15x / 20x: met)" in table
    assert "newslora fp32 vs seed fp32: training **10.0x**, prediction **12.5x**" in table
    assert "fastest timed step (32.0 s, 2.00 samples/s" in table  # identical batches
    assert "30.0% of this machine's measured bf16 matmul rate" in table
    assert "goal >= 40%: NOT met" in table


def test_full_pool_estimates_only_the_arms_not_run_on_it():
    """An arm measured on the whole pool is named as measured; an epoch is estimated, at the
    best measured rate, only for the arms that were not (here 0.9 x 87,862 rows / 10 per s)."""
    whole = _row("newslora", "bf16", 150.0, 300.0) | {"rows": 87_862}
    rows = [
        whole,
        _row("newslora", "bf16", 170.0, 300.0),
        _row("seed000-pipeline", "fp32", 10.0, 9.0),
    ]
    line = tables.full_pool(rows)
    assert "measured for newslora minilm-l6 bf16 (rows above)" in line
    assert (
        "seed000-pipeline minilm-l6 fp32: 2.2 h" in line and "newslora minilm-l6 bf16:" not in line
    )
    assert "not run on this machine" in tables.full_pool(rows[1:])
    assert tables.full_pool([whole]) is None


def test_onnx_int8_prediction_against_both_paths():
    """The ONNX Runtime row is prediction only: compared with the seed's prediction and with
    the torch path's at the machine's own precision (fp32 here: 'no bf16 units')."""
    fp32 = {"device": "cpu (test, no bf16 units)"}
    onnx = _row("newslora onnx int8", "int8", 1.0, 240.0) | fp32 | {"train_samples_per_s": None}
    rows = [
        _row("seed000-pipeline", "fp32", 2.0, 8.0, max_length=512) | fp32,
        _row("newslora", "fp32", 20.0, 80.0) | fp32,
        _row("newslora", "fp32", 20.0, 60.0, max_length=64) | fp32,  # not the 128 row
        onnx | {"labels_agree_with_torch": 99.5, "predict_rows": 400},
    ]
    (line,) = tables.onnx_lines(rows)
    assert "240.0 rows/s, **30.0x** the seed's, **3.0x** the torch path's (fp32)" in line
    assert "agree with the torch path's on 99.5% of the 400 rows" in line
    assert tables.onnx_lines(rows[:3]) == []


def test_gpu_goals_ratios_and_mfu_by_batch(tmp_path):
    """On a GPU: the 4x / 10x goals against the seed's fp16, and MFU checked on the best
    RoBERTa-base LoRA row at batch >= 64 (rows at another batch or encoder do not count)."""
    gpu = {"device": "NVIDIA H200", "encoder": "roberta-base (random weights)"}
    rows = [
        _row("seed000-pipeline", "fp16", 100.0, 50.0, max_length=512) | gpu,
        _row("newslora", "bf16", 450.0, 600.0) | gpu | {"mfu": 0.05, "batch_size": 32},
        _row("newslora batch 64", "bf16", 900.0, 600.0) | gpu | {"mfu": 0.12, "batch_size": 64},
        _row("newslora batch 1024", "bf16", 3e3, 600.0) | gpu | {"mfu": 0.41, "batch_size": 1024},
        _row("newslora batch 1024", "bf16", 3e3, 600.0) | {"mfu": 0.6, "batch_size": 1024},
    ]
    lines = tables.ratios(rows[:2])
    assert lines == [
        "* roberta-base (random weights), 1,000 rows, newslora bf16 vs seed fp16: training "
        "**4.5x**, prediction **12.0x** (GPU goal >= 4x / 10x: met)"
    ]
    (goal,) = tables.mfu_goal(rows)
    assert "at batch 1024: MFU **41.0%**" in goal and "(goal >= 35% at batch >= 64: met)" in goal
    assert goal.endswith("by batch: 64: 12.0%, 1024: 41.0%")  # MiniLM's 60% is not RoBERTa's
    assert "NOT met" in tables.mfu_goal(rows[:3])[0]
    assert tables.mfu_goal(rows[1:2]) == []  # batch 32 is below the goal's batch


def test_measured_rows_are_skipped_unless_forced(tmp_path):
    speed = _bench("speed")
    ctx = speed.Ctx(speed.MINILM, "minilm-l6", False, tmp_path, tmp_path, False, "cpu (test)")
    args = argparse.Namespace(
        only=["seed", "newslora"], rows=1000, precision=["auto", "fp32"], force=False
    )
    planned = [item[:4] for item in speed.pending(ctx, args, [])]
    auto = speed.newslora_precision("auto")
    assert planned[0] == ("seed000-pipeline", 1000, 512, "fp32")  # the tokenizer's maximum
    assert ("newslora", 1000, 128, "fp32") in planned and ("newslora", 1000, 128, auto) in planned
    done = [_row("newslora", "fp32", 20.0, 200.0)]
    left = [item[:4] for item in speed.pending(ctx, args, done)]
    assert ("newslora", 1000, 128, "fp32") not in left and len(left) == len(planned) - 1
    args.force = True
    assert len(list(speed.pending(ctx, args, done))) == len(planned)


def test_random_roberta_for_the_gpu_rows(tmp_path):
    """--gpu builds RoBERTa-base from the bundled architecture config with random weights;
    here a 1-layer copy of it, to check the folder loads and N counts the layers only."""
    from transformers import AutoModelForSequenceClassification

    speed = _bench("speed_machine")  # what speed.py's --gpu rows are built with
    small = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2}
    folder = speed.random_encoder(
        speed.ROBERTA_JSON, tmp_path / "rb", minilm_path(), intermediate_size=64, **small
    )
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=4)
    assert model.config.model_type == "roberta"
    layer = 4 * (32 * 32 + 32) + 2 * 32 * 64 + 64 + 32 + 2 * 2 * 32  # q,k,v,o + ffn + 2 norms
    assert speed.encoder_params(folder) == layer


def test_report_knows_every_lever():
    """speed_report keeps its own list of the levers (it must not import the training code):
    a lever speed_levers gains but the list lacks would be refused by lever_ab.py."""
    assert _bench("speed_report").LEVERS == list(_bench("speed_levers").LEVERS)


def test_a_lever_with_the_baselines_settings_is_called_spread():
    """A lever that ran with exactly the baseline's settings (eager-attention where "auto"
    is eager) is marked as spread, with its ratio range; one setting apart (batch-256) it
    is not, and rows recorded before the settings named the dropout are never compared."""
    settings = {"attention": "eager", "batch_size": 32, "encoder_dropout": 0.0}

    def row(name, speed, **changed):
        return {
            "arm": f"newslora lever: {name}",
            "train_samples_per_s": speed,
            "lever": settings | changed,
        }

    base, eager = row("baseline", 100.0), row("eager-attention", 108.0)
    bigger, old = row("batch-256", 50.0, batch_size=256), row("sdpa-attention", 90.0)
    del old["lever"]["encoder_dropout"]
    assert tables.same_settings(eager, base)
    assert not tables.same_settings(base, base)
    assert not tables.same_settings(bigger, base)
    assert not tables.same_settings(eager | {"train_samples_per_s": None}, base)  # eval-pass
    assert not tables.same_settings(old, base | {"lever": dict(old["lever"])})
    levers = {r["arm"].split(": ")[1]: r for r in (base, eager, bigger, old)}
    x = {k: r["train_samples_per_s"] / 100.0 for k, r in levers.items()}
    sentence = tables._spread(levers, x)
    assert "eager-attention ran with the baseline's own settings" in sentence
    assert "1.08-1.08x" in sentence and "within 0.08 of 1.00x" in sentence
    assert "batch-256" not in sentence and "sdpa" not in sentence


def test_findings_read_the_levers_encoder_not_another_one():
    """The findings read MiniLM-L6's rows (the levers' encoder), even where a 10,000-row row of
    another encoder comes first: one evaluation pass is set against MiniLM's epoch."""
    rows = [
        _row("newslora", "bf16", 30.0, 1500.0) | {"encoder": "mpnet", "rows": 10_000},
        _row("newslora", "bf16", 180.0, 9000.0) | {"rows": 10_000},
        _row("newslora", "bf16", 160.0, 8000.0),
        _row("newslora lever: baseline", "bf16", 150.0, None),
        _row("newslora lever: eval-pass", "bf16", 1.0, 250.0) | {"train_samples_per_s": None},
    ]
    (line,) = [x for x in tables.findings(rows) if x.startswith("* **Evaluation**")]
    assert "a 10,000-row epoch (50 s)" in line  # 0.9 x 10,000 / 180, not / 30


def test_step_profile_cuts_a_real_step_into_phases(tiny_bert, tmp_path):
    """step_profile trains the Recipe for a few steps and profiles the last: the phases the
    Trainer goes through are named, host ops are counted, its syncs traced to their callers, a
    CPU has no device time; a second row for the same key replaces the first, another
    override adds one."""
    profile = _bench("step_profile")
    row = profile.profile_row(tiny_bert, "tiny", 8, 4, 2, tmp_path, ["model.dropout=0"])
    assert {"forward", "backward", "optimizer step", "fetch + pad batch"} <= set(row["phases_ms"])
    assert row["host_op_ms_per_step"] > 0 and row["top_host_ops"]
    assert row["host_other_ms_per_step"] > 0  # the Trainer's own Python, between the ops
    kinds = row["host_op_kinds_ms"]  # every op in one kind, LoRA's products told from the base's
    assert kinds["LoRA matmul"] > 0 and kinds["base matmul"] > 0 and kinds["attention"] > 0
    assert sum(kinds.values()) == pytest.approx(row["host_op_ms_per_step"], abs=0.05)
    assert row["device_busy_ms_per_step"] == 0 and row["launches_per_step"] == 0
    assert row["steps_timed"] == 2 and row["median_step_ms"] > 0
    callers = row["syncs_by_caller"]  # on CPU, fused AdamW reads each step count back
    assert any("_fused_adamw_" in chain for chain in callers)
    assert sum(callers.values()) == pytest.approx(row["syncs_per_step"], abs=0.2)
    host = row["host"]  # what a host-bound GPU step is read against
    assert 1 <= host["cores_usable"] <= host["cores_seen"] and host["torch_threads"] >= 1
    assert host["allocator"] in ("tcmalloc", "default")
    out = tmp_path / "step_profile.json"
    profile.add_rows(out, [row])
    profile.add_rows(out, [row | {"median_step_ms": 1.0}])
    profile.add_rows(out, [row | {"overrides": []}])
    rows = profile.load_rows(out)
    assert [r["median_step_ms"] for r in rows] == [1.0, row["median_step_ms"]]
    assert "model.dropout=0" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("side, multiple", [("right", None), ("left", None), ("right", 16)])
def test_pad_collator_gives_what_the_tokenizer_pads(pool, side, multiple):
    """collate.PadCollator, the `numpy-collator` lever, pads as DataCollatorWithPadding (14x
    less host time at batch 1,024, benchmarks/collate.py): same tensors, dtypes and keys from
    MiniLM's real tokenizer (ids, mask, type ids), a label renamed to labels, teacher logits
    stacked, either side."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), padding_side=side)
    texts = (pool["title"] + " " + pool["description"]).head(64).tolist()
    enc = tokenizer(texts, truncation=True, max_length=48)
    rows = [
        {**{key: enc[key][i] for key in enc}, "label": i % 4, "teacher": [0.5 * i, -1.0]}
        for i in range(len(texts))
    ]
    ours = collate.PadCollator(tokenizer, pad_to_multiple_of=multiple)(rows)
    theirs = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)(rows)
    assert sorted(ours) == sorted(theirs) == sorted([*enc, "labels", "teacher"])
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    lengths = ours["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # rows of different lengths: padding was exercised


def test_pad_rows_refuses_a_tokenizer_without_a_pad_token():
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.pad_token = None
    rows = [dict(tokenizer("a short text")), dict(tokenizer("a longer text than that"))]
    with pytest.raises(ValueError, match="has no padding token"):
        collate.pad_rows(tokenizer, rows)
