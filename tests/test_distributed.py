"""Data-parallel training and evaluation (2 CPU processes over gloo), mixed precision, --gpus checks.

The 2-process run goes through the real command (`mambaad train --gpus 2 --device cpu`, which starts
torchrun's launcher) and is checked against independent single-process constructions: the weights
against DDP's semantics replayed in one process (each rank's share of the batch, gradients averaged),
the metrics against one process evaluating the saved model.
"""

import csv
import json
import math

import numpy as np
import pytest
import safetensors.torch
import torch
from test_engine import tiny_overrides
from tiny_data import make_dataset

from mambaad_cli.cli import main
from mambaad_cli.config import ConfigError, load_preset
from mambaad_cli.data import build_datasets, collate_samples
from mambaad_cli.engine import evaluate, train
from mambaad_cli.engine.acceleration import autocast, tf32_matmuls
from mambaad_cli.engine.calibrate import calibrate, in_sample_subset
from mambaad_cli.engine.checkpoint import load_model
from mambaad_cli.engine.device import seed_everything
from mambaad_cli.engine.distributed import shard
from mambaad_cli.engine.train import param_groups, step_schedule
from mambaad_cli.metrics import MetricAccumulator
from mambaad_cli.model import build_model

WORLD = 2
GLOBAL_BATCH = 4  # 2 images per process
# Tiny and deterministic: no stochastic depth, so the run is a pure function of the data order.
DDP_SETTINGS = {
    "data.val_fraction": 0.0,
    "model.decoder.drop_path_rate": 0.0,
    "train.deterministic": True,
    "train.batch_size": GLOBAL_BATCH,
    "eval.batch_size": 1,  # the same per-image computation however the test set is sharded
}


def cli_args(overrides: dict) -> list[str]:
    args = []
    for k, v in overrides.items():
        args += ["--set", f"{k}={json.dumps(v) if isinstance(v, list | bool) else v}"]
    return args


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """2 processes stopped after the first epoch (max_steps, as a killed run), then resumed to the end. One
    thread per worker, whatever the machine's cores (launch gives each cores // processes unless
    OMP_NUM_THREADS is set): the reference replays below run with one thread too (one_thread)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        return _ddp_run(tmp_path_factory)


def _ddp_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    data_root = make_dataset(tmp_path / "data", classes=("disc",), n_train=8)
    over = tiny_overrides(tmp_path, data_root, run_name="ddp", **DDP_SETTINGS)
    base = ["train", "--preset", "folder", "--device", "cpu", "--gpus", str(WORLD), "--no-progress"]
    first = {**over, "train.max_steps": 2, "train.eval_at_end": False}
    assert main([*base, *cli_args(first)]) == 0
    run_dir = tmp_path / "runs" / "folder" / "ddp"
    resume = ["--resume", str(run_dir), "--set", "train.max_steps=0", "--set", "train.eval_at_end=true"]
    assert main([*base, *resume]) == 0
    cfg = load_preset("folder", over)
    return run_dir, cfg


def test_one_run_folder_one_log_one_checkpoint(ddp_run):
    run_dir, _ = ddp_run
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["ddp", "latest"]
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["config.yaml", "log.csv", "metrics.csv", "metrics.json", "model.json", "model.safetensors",
         "train_state.pt"]
    )
    rows = list(csv.DictReader((run_dir / "log.csv").open()))
    # 8 images, global batch 4: 2 steps per epoch, 2 epochs (the second one after the resume), one row each
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 2, 2]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    assert torch.load(run_dir / "train_state.pt", weights_only=True)["step"] == 4


def test_a_user_error_in_the_workers_is_one_line(ddp_run, capsys):
    run_dir, cfg = ddp_run
    args = ["train", "--preset", "folder", "--device", "cpu", "--gpus", str(WORLD), "--no-progress"]
    overrides = {"data.root": cfg.data.root, "output_dir": cfg.output_dir, "run_name": "ddp"}
    assert main([*args, *cli_args(overrides)]) == 2  # the run name is taken: every rank stops
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --run-name ddp") and sum("error" in line for line in err) == 1


def replay_ddp(cfg, steps_per_epoch: int, ranks: list[int]) -> dict[str, torch.Tensor]:
    """DDP's update rule in one process: every step, each of `ranks` computes the loss of its
    DistributedSampler share of the global batch; their gradients are averaged (what DDP's all-reduce
    does), then one clipped AdamW step with the lr of the global batch."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg)
    train_ds = build_datasets(cfg.data)[0]
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr * GLOBAL_BATCH / 16,
        betas=tuple(cfg.train.betas), eps=cfg.train.eps,
    )
    total = cfg.train.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, step_schedule(total, cfg.train.lr_decay_at, cfg.train.lr_decay)
    )
    per_rank = GLOBAL_BATCH // WORLD
    model.train()
    for epoch in range(cfg.train.epochs):
        orders = {}
        for r in ranks:
            sampler = torch.utils.data.DistributedSampler(
                train_ds, num_replicas=WORLD, rank=r, shuffle=True, seed=cfg.train.seed, drop_last=True
            )
            sampler.set_epoch(epoch)
            orders[r] = list(sampler)
        for k in range(steps_per_epoch):
            optimizer.zero_grad()
            for r in ranks:
                idx = orders[r][k * per_rank : (k + 1) * per_rank]
                images = collate_samples([train_ds[i] for i in idx])["image"]
                enc, dec = model(images)
                (model.loss(enc, dec, cfg.train.loss_weight) / len(ranks)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            scheduler.step()
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def one_thread():
    """The workers ran with one thread each (ddp_run): so does the reference, for the same float sums (AdamW
    turns rounding noise in near-zero gradients into lr-sized steps, so thread counts must match)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ddp_weights_follow_the_averaged_gradients(ddp_run, one_thread):
    run_dir, cfg = ddp_run
    saved = safetensors.torch.load_file(str(run_dir / "model.safetensors"))
    expected = replay_ddp(cfg, steps_per_epoch=2, ranks=[0, 1])
    for name, p in expected.items():
        torch.testing.assert_close(saved[name], p, rtol=1e-5, atol=1e-6, msg=name)
    # Without the all-reduce, rank 0 would have followed its own share alone: far from the saved weights.
    alone = replay_ddp(cfg, steps_per_epoch=2, ranks=[0])
    assert max(float((saved[n] - p).abs().max()) for n, p in alone.items()) > 1e-3


def same_metrics(a: dict, b: dict) -> bool:
    def equal(x, y):
        if x is None or y is None or (isinstance(x, float) and math.isnan(x)):
            return (x is None or math.isnan(x)) and (y is None or math.isnan(y))
        return x == y

    return set(a) == set(b) and all(equal(a[k], b[k]) for k in a)


def test_distributed_metrics_and_thresholds_equal_one_process(ddp_run, one_thread):
    run_dir, cfg = ddp_run
    written = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "model.json").read_text())
    model, _, _ = load_model(run_dir)
    train_ds, test_ds, _ = build_datasets(cfg.data)
    single = evaluate(model, test_ds, cfg, torch.device("cpu"), show_progress=False,
                      thresholds=info["thresholds"])
    assert written["counts"] == single.counts and written["counts"]["disc"]["images"] == 4
    for cls, values in single.per_class.items():
        assert same_metrics(written["classes"][cls], values), cls
    # rank 0's calibration == one process's calibration of the saved model
    calib = calibrate(model, in_sample_subset(train_ds, cfg.train.seed), cfg, torch.device("cpu"), "training")
    assert info["thresholds"] == calib["thresholds"] and info["map_range"] == calib["map_range"]


def random_class(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    maps = rng.random((n, 16, 16), dtype=np.float32)
    masks = np.zeros((n, 16, 16), bool)
    for i in range(n // 2):
        masks[i, 2 + i : 7 + i, 3:9] = True
        maps[i][masks[i]] += 0.3
    scores = maps.reshape(n, -1).max(1)
    return scores, masks.any(axis=(1, 2)), maps, masks


@pytest.mark.parametrize("world", [2, 3, 9])
def test_merged_accumulators_equal_one_accumulator(world):
    scores, labels, maps, masks = random_class(7)
    whole = MetricAccumulator()
    for s in range(0, 7, 2):  # one process, batches of 2
        whole.update(scores[s : s + 2], labels[s : s + 2], maps[s : s + 2], masks[s : s + 2])
    states = []
    for r in range(world):  # each rank its contiguous block (9 ranks: some get none), batches of 2
        acc, idx = MetricAccumulator(), shard(list(range(7)), r, world)
        for s in range(0, len(idx), 2):
            b = idx[s : s + 2]
            acc.update(scores[b], labels[b], maps[b], masks[b])
        states.append(acc.state())
    merged = MetricAccumulator.from_states(states)
    assert same_metrics(merged.compute(), whole.compute())
    assert merged.counts() == whole.counts() and same_metrics(merged.score_stats(), whole.score_stats())


def test_shards_are_contiguous_balanced_and_complete():
    for n in (0, 1, 5, 16):
        for world in (1, 2, 3, 8):
            parts = [shard(list(range(n)), r, world) for r in range(world)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


# --------------------------------------------------------------------------- precision


def test_autocast_is_bf16_or_nothing():
    torch.manual_seed(0)
    layer, x, cpu = torch.nn.Linear(8, 4), torch.rand(3, 8), torch.device("cpu")
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        fp32 = layer(x)
    with autocast(cpu, "bf16"):
        bf16 = layer(x)
    assert fp32.dtype == torch.float32 and torch.equal(fp32, layer(x))
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), fp32, rtol=2e-2, atol=2e-2)


def test_bf16_training_on_cpu_is_finite_and_close_to_fp32(tmp_path):
    data_root = make_dataset(tmp_path / "data", classes=("disc",), n_train=8)
    runs = {}
    for precision in ("bf16", "fp32"):
        over = tiny_overrides(tmp_path, data_root, run_name=precision, **{
            "train.precision": precision, "train.max_steps": 2, "train.eval_at_end": False,
            "data.val_fraction": 0.0, "model.decoder.drop_path_rate": 0.0})
        result = train(load_preset("folder", over), show_progress=False)
        losses = [float(r["loss"]) for r in csv.DictReader((result.run_dir / "log.csv").open())]
        runs[precision] = losses, safetensors.torch.load_file(str(result.run_dir / "model.safetensors"))
    (bf16_loss, bf16_w), (fp32_loss, fp32_w) = runs["bf16"], runs["fp32"]
    assert len(bf16_loss) == 2 and all(math.isfinite(v) for v in bf16_loss)
    assert bf16_loss[0] == pytest.approx(fp32_loss[0], rel=0.05)  # same init and batch, lower precision
    assert all(v.dtype == torch.float32 for v in bf16_w.values() if v.is_floating_point())  # fp32 weights
    assert any(not torch.equal(bf16_w[k], fp32_w[k]) for k in fp32_w)  # autocast did change the run


def test_precision_values_are_checked(capsys):
    with pytest.raises(ConfigError, match="train.precision"):
        load_preset("folder", {"train.precision": "fp16"})
    assert main(["train", "--preset", "folder", "--precision", "fp16"]) == 2
    assert "train.precision" in capsys.readouterr().err


# --------------------------------------------------------------------------- --gpus


def test_more_gpus_than_devices_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    args = ["train", "--preset", "folder", "--device", "cuda", "--gpus", "2", "--output-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--gpus 2" in err and "1 CUDA device" in err
    assert not any(tmp_path.iterdir())  # nothing started


def test_gpus_without_cuda_asks_for_device_cpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--preset", "folder", "--gpus", "2"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_tf32_matmuls_switch_on_inside_and_back_after():
    before = torch.get_float32_matmul_precision()
    assert before == "highest"  # PyTorch's default: the paper's exact fp32
    with tf32_matmuls():
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    with tf32_matmuls(False):
        assert torch.get_float32_matmul_precision() == before
    layer, x = torch.nn.Linear(4, 3), torch.randn(2, 4)
    with autocast(torch.device("cpu"), "tf32"):
        assert torch.get_float32_matmul_precision() == "high"
        assert layer(x).dtype == torch.float32  # float32 tensors: only the products' inputs are rounded
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(RuntimeError), tf32_matmuls():
        raise RuntimeError("restored on errors too")
    assert torch.get_float32_matmul_precision() == before
