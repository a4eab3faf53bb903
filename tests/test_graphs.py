"""CUDA graphs (engine/graphs.py): when train / eval use them, the capture and replay, the fallback to eager
calls when a capture fails under auto, and the learning rates a graphed step needs.

The GPU-only tests run on the H200 in device sessions; on CPU, fakes stand in for torch.cuda's graph API."""

import contextlib

import pytest
import torch

from mambaad_cli.cli import main
from mambaad_cli.config import ConfigError, load_preset
from mambaad_cli.engine import graphs
from mambaad_cli.engine.graphs import GraphedStep, is_compiled, use_cuda_graphs
from mambaad_cli.engine.train import check_cuda_graphs, match_lr_kinds, step_schedule
from mambaad_cli.errors import UserError


def test_cuda_graphs_need_cuda_and_eager_modules_and_say_so_in_one_line(tmp_path, capsys):
    cfg = load_preset("folder", {"train.cuda_graphs": True})
    with pytest.raises(UserError, match="--cuda-graphs: needs a CUDA device"):
        check_cuda_graphs(cfg, torch.device("cpu"))
    check_cuda_graphs(cfg, torch.device("cuda"))  # one process or several (data-parallel steps are captured)
    with pytest.raises(UserError, match="not with --compile"):
        check_cuda_graphs(load_preset("folder", {"train.cuda_graphs": True, "train.compile": True}),
                          torch.device("cuda"))
    check_cuda_graphs(load_preset("folder"), torch.device("cpu"))  # auto: nothing to check
    code = main(["train", "--preset", "folder", "--data-root", str(tmp_path), "--device", "cpu",
                 "--output-dir", str(tmp_path / "runs"), "--cuda-graphs"])
    err = capsys.readouterr().err
    assert code == 2  # the resolved config, then the one error line
    assert err.strip().splitlines()[-1] == (
        "error: --cuda-graphs: needs a CUDA device, got train.device cpu (--set train.cuda_graphs=false)"
    )
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


def test_graphed_step_leaves_cpu_tensors_to_the_function():
    calls = []
    step = GraphedStep(lambda x: calls.append(x) or x * 2, warmup=1)
    for _ in range(3):
        torch.testing.assert_close(step(torch.ones(2)), torch.full((2,), 2.0))
    assert len(calls) == 3 and not step.captured


def test_the_capture_takes_a_shape_that_had_its_warm_up_calls(monkeypatch):
    """An evaluation's batches of a class can end in a smaller one before the warm-up is over (each of two
    ranks' 56 images: 16, 16, 16, 8). That shape is new, so its first call compiles and autotunes the
    Triton kernels, which a capture cannot hold: it waits, eager, and the capture takes the warm shape."""
    step = GraphedStep(lambda x: x, warmup=3)
    eager, captured = [], []
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))  # let the CPU tensors in
    monkeypatch.setattr(step, "_on_side_stream", lambda x: eager.append(len(x)) or x)
    monkeypatch.setattr(step, "_capture_or_fall_back", lambda x: captured.append(len(x)) or x)
    for n in (16, 16, 16, 8, 16):
        step(torch.zeros(n, 2))
    assert eager == [16, 16, 16, 8] and captured == [16]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_step_replays_the_function_and_falls_back_for_other_shapes():
    weight = torch.randn(4, 4, device="cuda")
    step = GraphedStep(lambda x: torch.relu(x @ weight).sum(dim=1), warmup=2)
    for i in range(6):
        x = torch.randn(3, 4, device="cuda") + i
        torch.testing.assert_close(step(x), torch.relu(x @ weight).sum(dim=1))
    assert step.captured
    odd = torch.randn(5, 4, device="cuda")
    torch.testing.assert_close(step(odd), torch.relu(odd @ weight).sum(dim=1))


def test_graphed_step_captures_in_thread_local_mode(monkeypatch):
    """The capture must not be broken by other threads: in training the DataLoader's pin-memory thread
    allocates pinned buffers (cuMemHostAlloc) meanwhile, which under the default "global" capture mode
    invalidated the capture (seen on the H200 in real-dev training). It captures on the shared side stream
    (the one DDP is built on and the warm-ups run on). Recording fakes stand in for the GPU."""
    modes, streams, side = [], [], object()

    class FakeGraph:
        def replay(self):
            pass

    @contextlib.contextmanager
    def fake_graph(graph, **kwargs):
        modes.append(kwargs.get("capture_error_mode", "global"))
        streams.append(kwargs.get("stream"))
        yield

    monkeypatch.setattr(graphs.torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(graphs.torch.cuda, "graph", fake_graph)
    monkeypatch.setattr(graphs.torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(graphs, "side_stream", lambda device: side)
    step = graphs.GraphedStep(lambda x: x * 2, warmup=0)
    torch.testing.assert_close(step._capture_or_fall_back(torch.ones(3)), torch.full((3,), 2.0))
    assert modes == ["thread_local"] and streams == [side] and step.captured


def test_resumed_learning_rates_take_the_kind_this_run_needs():
    """A graphed run saves its rates as device tensors (they come back on the CPU); an eager run saves floats.
    After a resume the optimizer gets floats when eager, a tensor on the run's device when graphed, and the
    scheduler's bases are floats, so its next step writes the decayed rate where the optimizer reads it."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, step_schedule(10, 0.5, 0.1))
    opt.param_groups[0]["lr"] = torch.tensor(0.5)  # as loaded from a graphed run's state
    sched.base_lrs = [torch.tensor(0.5)]
    match_lr_kinds(opt, sched, torch.device("cpu"), graphed=False)
    assert type(opt.param_groups[0]["lr"]) is float and sched.base_lrs == [0.5]
    for _ in range(6):
        w.grad = torch.ones(3)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # decayed after half the steps
    match_lr_kinds(opt, sched, torch.device("cpu"), graphed=True)
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(0.05)
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)  # filled in place


# --------------------------------------------------------------------------- auto: on where graphs apply


CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(
    ("setting", "device", "compiled", "expected"),
    [
        ("auto", CUDA, False, True),  # the default on one GPU, and per rank of a data-parallel run
        ("auto", CPU, False, False),
        ("auto", CUDA, True, False),  # torch.compile'd modules: eager
        (True, CUDA, False, True),
        (True, CPU, False, False),  # check_cuda_graphs refuses this first, with one line
        (False, CUDA, False, False),
    ],
)
def test_auto_turns_graphs_on_for_cuda_processes_without_compile(setting, device, compiled, expected):
    assert use_cuda_graphs(setting, device, compiled) is expected


@pytest.fixture
def fake_capture(monkeypatch):
    """torch.cuda's graph calls replaced by fakes that record replays; `fail` makes the next capture raise
    as capture_end does when it is invalidated."""
    state = {"replays": 0, "fail": False}

    class FakeGraph:
        def replay(self):
            state["replays"] += 1

    @contextlib.contextmanager
    def fake_graph(graph, **kwargs):
        yield
        if state["fail"]:
            raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs.torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(graphs.torch.cuda, "graph", fake_graph)
    monkeypatch.setattr(graphs.torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(graphs, "side_stream", lambda device: None)
    return state


@pytest.mark.parametrize("others_ok", [True, False])
@pytest.mark.parametrize("auto", [True, False])
def test_data_parallel_ranks_agree_on_the_capture_before_any_replay(fake_capture, auto, others_ok):
    """Each rank says whether its capture succeeded and learns whether all did, before anything captured
    runs: all did, it replays; another failed, it drops its graph and goes on eagerly under auto (one line)
    or raises under true, instead of replaying all-reduces the failed rank would never join."""
    said, notices = [], []

    def agree(ok):
        said.append((ok, fake_capture["replays"]))  # what this rank said, and whether it had replayed
        return ok and others_ok

    step = graphs.GraphedStep(lambda x: x * 2, warmup=0, on_failure=notices.append if auto else None,
                              agree=agree)
    x = torch.ones(3)
    if others_ok or auto:
        torch.testing.assert_close(step._capture_or_fall_back(x), torch.full((3,), 2.0))
    else:
        with pytest.raises(RuntimeError, match="another process's capture failed"):
            step._capture_or_fall_back(x)
    assert said == [(True, 0)]
    assert step.captured is others_ok and step.failed is not others_ok
    assert fake_capture["replays"] == (1 if others_ok else 0)
    assert notices == ([] if others_ok or not auto else ["another process's capture failed"])


@pytest.mark.parametrize("auto", [True, False])
def test_a_rank_whose_capture_failed_tells_the_others_before_it_falls_back_or_raises(fake_capture, auto):
    said, notices = [], []
    fake_capture["fail"] = True
    step = graphs.GraphedStep(lambda x: x + 1, warmup=0, on_failure=notices.append if auto else None,
                              agree=lambda ok: said.append(ok) or False)
    x = torch.ones(3)
    if auto:
        torch.testing.assert_close(step._capture_or_fall_back(x), torch.full((3,), 2.0))  # eager
        assert notices == ["operation not permitted when stream is capturing"]
    else:
        with pytest.raises(RuntimeError, match="not permitted"):
            step._capture_or_fall_back(x)
    assert said == [False] and not step.captured and step.failed and fake_capture["replays"] == 0
    torch.testing.assert_close(step(x), torch.full((3,), 2.0))  # every later call eager


def test_graphs_default_to_auto_and_take_only_auto_true_or_false():
    cfg = load_preset("folder")
    assert cfg.train.cuda_graphs == "auto" and cfg.eval.cuda_graphs == "auto"
    assert load_preset("folder", {"train.cuda_graphs": "false"}).train.cuda_graphs is False
    assert load_preset("folder", {"eval.cuda_graphs": "yes"}).eval.cuda_graphs is True
    with pytest.raises(ConfigError, match="'train.cuda_graphs': 'sometimes' is not one of auto, true, false"):
        load_preset("folder", {"train.cuda_graphs": "sometimes"})
    # auto never asks for a check: only an explicit true can be refused
    check_cuda_graphs(cfg, CPU)


def test_compiled_modules_are_recognised():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    assert not is_compiled(model)
    model[0].compile()  # in place, as engine/acceleration.py does; compiles lazily, on the first call
    assert is_compiled(model)


def test_no_cuda_graphs_option_turns_them_off_for_train_and_eval(tmp_path, monkeypatch):
    seen = {}

    def fake_train(cfg, resume=None, show_progress=True):
        seen["train"], seen["eval"] = cfg.train.cuda_graphs, cfg.eval.cuda_graphs
        raise UserError("stop here")

    monkeypatch.setattr("mambaad_cli.engine.train", fake_train)
    code = main(["train", "--preset", "folder", "--data-root", str(tmp_path), "--device", "cpu",
                 "--output-dir", str(tmp_path / "runs"), "--no-cuda-graphs"])
    assert code == 2 and seen == {"train": False, "eval": False}


# --------------------------------------------------------------------------- a capture that fails


class _FakeStream:
    def __init__(self, name: str):
        self.name = name

    def wait_stream(self, other) -> None:
        pass


class _FailingCapture:
    """torch.cuda's graph API faked so that the capture raises as capture_end does for an operation that
    cannot be captured (a host read inside the step), leaving the capture stream current. `entered` lists
    the streams made current by torch.cuda.stream (the eager calls')."""

    def __init__(self, monkeypatch):
        self.current, self.set_to, self.entered = _FakeStream("main stream"), [], []

        @contextlib.contextmanager
        def failing_graph(graph, **kwargs):
            self.current = _FakeStream("capture stream")
            yield
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

        @contextlib.contextmanager
        def on_stream(stream):
            self.entered.append(stream.name)
            yield

        def set_stream(stream):
            self.set_to.append(stream.name)
            self.current = stream

        monkeypatch.setattr(graphs.torch.cuda, "CUDAGraph", lambda: object())
        monkeypatch.setattr(graphs.torch.cuda, "graph", failing_graph)
        monkeypatch.setattr(graphs.torch.cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(graphs.torch.cuda, "current_stream", lambda device=None: self.current)
        monkeypatch.setattr(graphs.torch.cuda, "set_stream", set_stream)
        monkeypatch.setattr(graphs.torch.cuda, "stream", on_stream)
        monkeypatch.setattr(graphs, "side_stream", lambda device: _FakeStream("side stream"))


def test_a_failed_capture_under_auto_says_so_once_and_runs_eagerly(monkeypatch):
    fake = _FailingCapture(monkeypatch)
    notices, calls = [], []
    step = GraphedStep(lambda x: calls.append(x) or x * 3, warmup=0, on_failure=notices.append)
    x = torch.arange(4.0)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))  # let the CPU tensor in
    torch.testing.assert_close(step(x), x * 3)  # the capture's call: the eager result
    assert notices == ["CUDA error: operation not permitted when stream is capturing"]
    assert fake.set_to == ["main stream"]  # the stream current before the capture is current again
    assert step.failed and not step.captured
    torch.testing.assert_close(step(x + 1), (x + 1) * 3)
    assert len(calls) == 3 and len(notices) == 1  # the capture's call, its eager rerun, then one eager call
    # both eager calls on the side stream, where DDP made its AccumulateGrad nodes (engine/graphs.py)
    assert fake.entered == ["side stream", "side stream"]


def test_a_failed_capture_raises_when_graphs_were_asked_for(monkeypatch):
    _FailingCapture(monkeypatch)
    step = graphs.graph_step(lambda x: x * 3, True, "train")
    step.warmup = 0
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    with pytest.raises(RuntimeError, match="not permitted when stream is capturing"):
        step(torch.ones(2))


def test_graph_step_reports_a_failure_in_one_line_naming_the_option(monkeypatch, capsys):
    _FailingCapture(monkeypatch)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    step = graphs.graph_step(lambda x: x + 1, "auto", "eval")
    step.warmup = 0
    torch.testing.assert_close(step(torch.zeros(2)), torch.ones(2))
    err = " ".join(capsys.readouterr().err.split())
    assert err == ("CUDA graphs: the capture failed (CUDA error: operation not permitted when stream is "
                   "capturing); going on eagerly (--set eval.cuda_graphs=false skips the attempt)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_host_read_in_the_step_falls_back_and_later_captures_still_work():
    """On a GPU: a step that reads a value on the host (not capturable) runs eagerly after its failed
    capture, on the stream that was current before, and a later capture in the same process succeeds."""
    weight = torch.randn(4, 4, device="cuda")

    def host_read(x):
        y = torch.nn.functional.dropout(x @ weight, 0.5)  # a draw from the default generator, as drop_path
        return y * (y.sum() > 0).item()  # .item() syncs: not permitted while capturing

    notices = []
    stream = torch.cuda.current_stream()
    step = GraphedStep(host_read, warmup=1, on_failure=notices.append)
    for i in range(4):
        x = torch.randn(3, 4, device="cuda") + i  # draws: the generator must not be left in capture mode
        torch.manual_seed(i)
        expected = host_read(x)
        torch.manual_seed(i)
        torch.testing.assert_close(step(x), expected)
    assert len(notices) == 1 and step.failed and not step.captured
    assert torch.cuda.current_stream() == stream
    fine = GraphedStep(lambda x: torch.relu(x @ weight), warmup=1)
    for i in range(4):
        x = torch.randn(3, 4, device="cuda") - i
        torch.testing.assert_close(fine(x), torch.relu(x @ weight))
    assert fine.captured
    drawing = GraphedStep(lambda x: torch.nn.functional.dropout(x, 0.5), warmup=1)  # a capture that draws
    for _ in range(4):
        out = drawing(torch.ones(256, device="cuda"))
        assert set(out.unique().tolist()) == {0.0, 2.0}
    assert drawing.captured


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_training_goes_on_eagerly_after_its_capture_fails(tmp_path, monkeypatch, capsys):
    """On a GPU, the real train(): the training step's capture is made to fail (a host read while capturing);
    the run says so in one line, trains on eagerly (drop_path draws from the generator the capture left),
    then captures the evaluation's scoring and writes its metrics."""
    import csv
    import json

    from test_engine import tiny_overrides
    from tiny_data import make_dataset

    from mambaad_cli.engine import train

    make_dataset(tmp_path / "data", n_train=16)
    capture = GraphedStep._record

    def failing_once(self, x):
        if self.on_failure is None or getattr(failing_once, "done", False):  # eval's scorer: a real capture
            return capture(self, x)
        failing_once.done = True
        fn = self.fn
        self.fn = lambda x: fn(x) * (x.sum() * 0 + 1).item()  # .item(): not permitted while capturing
        try:
            return capture(self, x)
        finally:
            self.fn = fn

    monkeypatch.setattr(GraphedStep, "_record", failing_once)
    cfg = load_preset("folder", tiny_overrides(tmp_path, tmp_path / "data", **{
        "train.device": "cuda", "train.epochs": 3, "model.decoder.drop_path_rate": 0.2,
        "eval.batch_size": 1}))  # one batch shape, so that the scoring's fourth call is captured
    result = train(cfg, show_progress=False)
    err = " ".join(capsys.readouterr().err.split())
    assert "CUDA graphs: the capture failed (" in err and "going on eagerly" in err
    rows = list(csv.DictReader(open(result.run_dir / "log.csv")))
    assert len(rows) == result.steps and all(float(r["loss"]) == float(r["loss"]) for r in rows)  # no NaN
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert set(metrics["classes"]) == {"disc", "stripes"}
    assert failing_once.done


def test_a_data_parallel_step_is_captured_after_ddps_warm_up(monkeypatch):
    """PyTorch's notes on capturing DDP ask for 11 eager iterations first: make_train_step takes the count,
    and the step runs eagerly (on a side stream) until then, captures at the next call (fakes record which
    path each call took: no GPU here)."""
    from mambaad_cli.engine.graphs import DDP_WARMUP_CALLS, WARMUP_CALLS
    from mambaad_cli.engine.train import make_train_step

    assert DDP_WARMUP_CALLS >= 11 and WARMUP_CALLS < DDP_WARMUP_CALLS
    cfg = load_preset("folder", {"train.cuda_graphs": True})
    model = torch.nn.Linear(2, 2)
    model.loss = lambda enc, dec, weight: (enc - dec).pow(2).mean()  # never called: the fakes below
    sgd = torch.optim.SGD(model.parameters(), 0.1)
    step = make_train_step(model, model, sgd, cfg, True, DDP_WARMUP_CALLS)
    assert isinstance(step, GraphedStep) and step.warmup == DDP_WARMUP_CALLS and step.on_failure is None
    default = make_train_step(model, model, sgd, cfg, True)
    assert default.warmup == WARMUP_CALLS
    paths = []
    monkeypatch.setattr(GraphedStep, "_on_side_stream", lambda self, x: paths.append("eager"))
    monkeypatch.setattr(GraphedStep, "_capture_or_fall_back", lambda self, x: paths.append("capture"))

    class OnGpu:  # what __call__ reads of a batch before it captures: where it is, and its signature
        is_cuda = True
        shape, dtype, device = (16, 3, 8, 8), torch.float32, torch.device("cuda", 0)

        def stride(self):
            return (192, 64, 8, 1)

    for _ in range(DDP_WARMUP_CALLS + 1):
        step(OnGpu())
    assert paths == ["eager"] * DDP_WARMUP_CALLS + ["capture"]
