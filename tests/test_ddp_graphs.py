"""A data-parallel training step captured as a CUDA graph (--gpus N): DDP built on a side stream,
DDP_WARMUP_CALLS eager calls, then replays that must train as the eager step does; and, when one rank's
capture fails under auto, every rank going on eagerly in step.

GPU only (the H200 in device sessions): a one-rank NCCL group in this process exercises DDP's hooks and its
all-reduce inside the capture; two ranks need two GPUs (README, 'Two GPUs', measures that).

The runs use the PyTorch scan and deterministic algorithms, so graphed and eager must agree bit for bit. With
the Triton scan, whose backward sums with atomics, two eager runs alone ended 4 % apart in their parameter
changes and two graphed runs 8 % (H200, session 18): too loose to tell a graph missing its replays (a fifth
of the updates) from noise. Deterministic, all four runs were equal to the last bit."""

import copy
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
from gpu_runs import deterministic

from mambaad_cli.config import load_preset
from mambaad_cli.engine.acceleration import apply_speed_options
from mambaad_cli.engine.distributed import data_parallel, sync_batchnorm
from mambaad_cli.engine.graphs import DDP_WARMUP_CALLS, GraphedStep
from mambaad_cli.engine.train import make_train_step
from mambaad_cli.model import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL and CUDA graphs need a GPU")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_rank_nccl_group():
    device = torch.device("cuda", 0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                            device_id=device)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def _train_eager_then_graphed(
    device: torch.device, rank: int = 0, fail_rank: int = -1
) -> dict[str, torch.Tensor]:
    """The same DDP training twice from one start, eager then graphed: each run's losses and trainable
    parameters after DDP_WARMUP_CALLS + 4 steps (11 eager, the capture, 3 replays), on the CPU. On rank
    `fail_rank` the graphed run's capture fails (a host read while capturing), under cuda_graphs auto."""
    with deterministic():
        return _train_twice(device, rank, fail_rank)


def _failing_capture(step: GraphedStep) -> None:
    """This step's capture raises as a host read inside it makes it (after the whole step was recorded)."""
    record = step._record

    def record_with_a_host_read(x):
        fn = step.fn
        step.fn = lambda x: fn(x) * (x.sum() * 0 + 1).item()  # .item(): not permitted while capturing
        try:
            record(x)
        finally:
            step.fn = fn

    step._record = record_with_a_host_read


def _train_twice(device: torch.device, rank: int, fail_rank: int = -1) -> dict[str, torch.Tensor]:
    # no DropPath (its draws are the one thing eager and graphed runs take from different RNG calls); the
    # PyTorch scan (no atomics: module docstring)
    cfg = load_preset("demo", {"model.encoder.weights": "none", "model.decoder.drop_path_rate": 0.0,
                               "model.decoder.scan_backend": "torch",
                               "train.cuda_graphs": True if fail_rank < 0 else "auto"})
    torch.manual_seed(0)  # the same start on every rank
    reference = build_model(cfg).to(device)
    data = torch.Generator(device).manual_seed(1 + rank)  # each rank its own images
    batches = [torch.rand(4, 3, 64, 64, device=device, generator=data) for _ in range(DDP_WARMUP_CALLS + 4)]
    trainable = [p for p in reference.parameters() if p.requires_grad]
    out = {"start": torch.cat([p.detach().flatten() for p in trainable]).cpu()}
    for graphed in (False, True):
        model = sync_batchnorm(copy.deepcopy(reference), device)
        apply_speed_options(model, cfg.train)
        net = data_parallel(model, device, graphed=graphed)
        trainable = [p for p in model.parameters() if p.requires_grad]
        sgd = torch.optim.SGD(trainable, lr=1e-4)
        step = make_train_step(net, model, sgd, cfg, graphed, DDP_WARMUP_CALLS)
        if graphed and rank == fail_rank:
            _failing_capture(step)
        name = "graphed" if graphed else "eager"
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            out[f"{name}_losses"] = torch.stack([step(x) for x in batches]).cpu()
        # DDP, the warm-up calls and the capture share one side stream: no gradient crosses streams
        assert not [w for w in seen if "AccumulateGrad node's stream" in str(w.message)]
        out[f"{name}_params"] = torch.cat([p.detach().flatten() for p in trainable]).cpu()
        if graphed:
            assert isinstance(step, GraphedStep)
            assert step.captured is (fail_rank < 0)  # the last 3 batches were replays, or eager on every rank
    return out


def _assert_graphed_trains_as_eager(out: dict[str, torch.Tensor]) -> None:
    # deterministic runs: the same losses and the same weights, replays included (without them the graphed
    # run would lack 3 of its 15 updates)
    assert not torch.equal(out["eager_params"], out["start"])
    assert torch.equal(out["graphed_losses"], out["eager_losses"])
    assert torch.equal(out["graphed_params"], out["eager_params"])


def test_a_graphed_data_parallel_step_trains_as_the_eager_one(one_rank_nccl_group):
    _assert_graphed_trains_as_eager(_train_eager_then_graphed(one_rank_nccl_group))


def _two_rank_worker(rank: int, port: int, folder: str, fail_rank: int = -1) -> None:
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            device_id=device)
    try:
        torch.save(_train_eager_then_graphed(device, rank, fail_rank), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two ranks need two GPUs")
def test_two_graphed_ranks_stay_in_step(tmp_path):
    """Two ranks with their own images: the replayed all-reduces keep both replicas the same, bit for bit (a
    graph without them would let each rank follow its own gradients), and each trains as eagerly."""
    import torch.multiprocessing as mp

    mp.spawn(_two_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for out in ranks:
        _assert_graphed_trains_as_eager(out)
    assert torch.equal(ranks[0]["graphed_params"], ranks[1]["graphed_params"])
    assert torch.equal(ranks[0]["eager_params"], ranks[1]["eager_params"])
    assert not torch.equal(ranks[0]["graphed_losses"], ranks[1]["graphed_losses"])  # different images


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two ranks need two GPUs")
def test_when_one_ranks_capture_fails_both_go_on_eagerly_in_step(tmp_path):
    """train.cuda_graphs auto, rank 1's capture fails: the ranks agree before any replay, rank 0 drops the
    graph it captured, and both train on eagerly, as the eager run and as each other (no rank left waiting
    in an all-reduce the other never joins: the test would hang instead)."""
    import torch.multiprocessing as mp

    mp.spawn(_two_rank_worker, args=(_free_port(), str(tmp_path), 1), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for out in ranks:
        _assert_graphed_trains_as_eager(out)
    assert torch.equal(ranks[0]["graphed_params"], ranks[1]["graphed_params"])
