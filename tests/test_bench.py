"""`mambaad bench` on CPU: the floors' arithmetic, the correctness gate, the mamba_ssm call convention (with a
stand-in module), the command's tables, JSON and one-line errors, and the exp2 microkernel (interpreted)."""

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

import kernels
from mambaad_cli.cli import main
from mambaad_cli.engine import bench, bench_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def no_gpu(monkeypatch):
    """Behave as a machine without a CUDA GPU, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _nbytes(shape, dtype):
    return torch.empty(shape, dtype=dtype, device="meta").nbytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("exp_rate", [3e12, 1e11, None])  # the bandwidth floor wins, the exp floor wins, none
def test_floors_count_every_tensor_the_scan_moves(dtype, exp_rate):
    batch, dim, length, n_state, groups, bandwidth = 3, 40, 12, 5, 4, 2.5e12
    x, bc = (batch, dim, length), (batch, groups, n_state, length)
    # forward: read u, delta, B, C; write out. backward: read u, delta, dout, B, C; write du, ddelta;
    # dB and dC accumulate in fp32
    fwd = sum(_nbytes(s, dtype) for s in (x, x, x, bc, bc))
    bwd = sum(_nbytes(s, dtype) for s in (x, x, x, x, x, bc, bc)) + 2 * _nbytes(bc, torch.float32)
    exp_us = None if exp_rate is None else batch * dim * length * n_state / exp_rate * 1e6

    got = bench.floors(batch, dim, length, n_state, groups, dtype.itemsize, bandwidth, exp_rate)

    assert (got["fwd_bytes"], got["bwd_bytes"]) == (fwd, bwd)
    assert got["bw_floor_us"] == pytest.approx(fwd / bandwidth * 1e6)
    assert got["exp_floor_us"] == (None if exp_us is None else pytest.approx(exp_us))
    assert got["floor_us"] == pytest.approx(max(fwd / bandwidth * 1e6, exp_us or 0))
    assert got["bwd_floor_us"] == pytest.approx(max(bwd / bandwidth * 1e6, exp_us or 0))


def test_datasheet_exp2_rate_is_16_per_clock_per_sm():
    assert bench.datasheet_exp2_rate(132, 1980.0) == pytest.approx(132 * 1980e6 * 16)


@pytest.mark.parametrize(
    "rel, dtype, status",
    [(5e-4, "fp32", "OK"), (2e-3, "fp32", "WRONG"), (2e-2, "bf16", "OK"), (5e-2, "bf16", "WRONG")],
)
def test_correctness_gate_is_relative_l2_against_the_dtype_tolerance(rel, dtype, status):
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 8, 16, generator=gen)
    noise = torch.randn(2, 8, 16, generator=gen)
    out = ref + noise * (rel * ref.norm() / noise.norm())

    err, got = bench.check_forward(out, ref, dtype)

    a, b = out.double().numpy(), ref.double().numpy()
    assert err == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(b), rel=1e-6)
    assert got == status


def _fake_selective_scan_cuda(calls, scale):
    """A stand-in for mamba_ssm's extension: the torch scan times `scale`, checking the call convention."""

    def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        calls.append("fwd")
        assert z is None and delta_softplus is True
        assert A.dtype == D.dtype == delta_bias.dtype == torch.float32
        out = kernels.selective_scan(u, delta, A, B, C, D, delta_bias=delta_bias, delta_softplus=True,
                                     backend="torch")
        return out * scale, torch.zeros(u.shape[0], u.shape[1], 1, 2 * A.shape[1])

    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, delta_softplus, recompute_out_z):
        calls.append("bwd")
        assert z is None and dz is None and delta_softplus is True and recompute_out_z is False
        assert dout.shape == out.shape == u.shape and x.shape[-1] == 2 * A.shape[1]
        return tuple(torch.zeros_like(t) for t in (u, delta, A, B, C, D, delta_bias))

    return types.SimpleNamespace(fwd=fwd, bwd=bwd)


@pytest.mark.parametrize("scale, status", [(1.0, "OK"), (1.01, "WRONG")])
def test_bench_scan_gates_and_compares_with_the_cuda_kernel(monkeypatch, scale, status):
    calls = []
    monkeypatch.setattr(bench, "_import_selective_scan_cuda", lambda: _fake_selective_scan_cuda(calls, scale))
    cpu = torch.device("cpu")
    logged = []

    rows = bench.bench_scan((2,), ((16, 24),), ("fp32",), ("torch", "cuda"), cpu, bench.make_timer(cpu, 0, 1),
                            bandwidth=1e10, exp_rate=None, log=logged.append)

    torch_row, cuda_row = rows
    assert {"fwd", "bwd"} <= set(calls)
    assert torch_row["status"] == "OK" and torch_row["rel_err"] < 1e-6
    assert cuda_row["status"] == status and cuda_row["rel_err"] == pytest.approx(abs(scale - 1), abs=1e-6)
    assert any("WRONG" in line for line in logged) == (status == "WRONG")
    assert torch_row["speedup_vs_cuda"] == pytest.approx(cuda_row["fwd_bwd_ms"] / torch_row["fwd_bwd_ms"])
    floor = bench.floors(2, 16, 24, 16, 8, 4, 1e10, None)
    assert torch_row["fwd_pct_floor"] == pytest.approx(100 * floor["floor_us"] / (torch_row["fwd_ms"] * 1e3))


def test_bench_scan_reports_gpu_time_beside_the_wall_clock(monkeypatch):
    # on a GPU each row also gets the kernels' time alone (engine/gpu_time.py), its own speed-up and the
    # forward's % of floor by it; faked here: the timer runs the call it is given and returns 2 ms for the
    # torch scan's forward + backward and 0.5 for its forward, 3 and 0.75 for the CUDA stand-in's
    calls = []
    monkeypatch.setattr(bench, "_import_selective_scan_cuda", lambda: _fake_selective_scan_cuda(calls, 1.0))

    def fake_gpu_timer(fn):
        before = len(calls)
        result = fn()
        cuda = len(calls) > before
        backward = "bwd" in calls[before:] if cuda else isinstance(result, tuple)  # autograd.grad's tuple
        ms = {(False, True): 2.0, (False, False): 0.5, (True, True): 3.0, (True, False): 0.75}
        return ms[cuda, backward]

    monkeypatch.setattr(bench, "make_gpu_timer", lambda device: fake_gpu_timer)
    cpu = torch.device("cpu")
    rows = bench.bench_scan((2,), ((16, 24),), ("fp32",), ("torch", "cuda"), cpu, bench.make_timer(cpu, 0, 1),
                            bandwidth=1e10, exp_rate=None, log=lambda line: None)

    torch_row, cuda_row = rows
    assert (torch_row["fwd_bwd_gpu_ms"], cuda_row["fwd_bwd_gpu_ms"]) == (2.0, 3.0)
    assert (torch_row["fwd_gpu_ms"], cuda_row["fwd_gpu_ms"]) == (0.5, 0.75)
    assert torch_row["speedup_gpu_vs_cuda"] == pytest.approx(1.5)
    floor_us = bench.floors(2, 16, 24, 16, 8, 4, 1e10, None)["floor_us"]
    assert torch_row["fwd_pct_floor_gpu"] == pytest.approx(100 * floor_us / 500)
    assert cuda_row["fwd_pct_floor_gpu"] == pytest.approx(100 * floor_us / 750)
    assert torch_row["fwd_pct_floor"] == pytest.approx(100 * floor_us / (torch_row["fwd_ms"] * 1e3))
    summary = bench_tables.summary_rows({"scan": rows, "ss2d": [], "model": []})
    assert summary[0]["speedup_gpu"] == pytest.approx(1.5)
    assert summary[0]["fwd_pct_floor_gpu"] == pytest.approx(torch_row["fwd_pct_floor_gpu"])


def test_a_failing_gpu_timer_leaves_the_wall_clock(monkeypatch):
    def broken(fn):
        raise RuntimeError("no CUPTI")

    monkeypatch.setattr(bench, "make_gpu_timer", lambda device: broken)
    cpu = torch.device("cpu")
    (row,) = bench.bench_scan((1,), ((8, 16),), ("fp32",), ("torch",), cpu, bench.make_timer(cpu, 0, 1),
                              bandwidth=1e10, exp_rate=None, log=lambda line: None)
    assert row["status"] == "OK" and row["fwd_bwd_ms"] > 0
    assert row["fwd_bwd_gpu_ms"] is None and "no CUPTI" in row["gpu_time_error"]
    assert row["fwd_gpu_ms"] is None and "fwd_pct_floor_gpu" not in row and row["fwd_pct_floor"] > 0


def test_cpu_run_prints_tables_and_writes_json(tmp_path, capsys, no_gpu, monkeypatch):
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", "0")  # a switch set: the JSON must say so
    monkeypatch.delenv("MAMBAAD_ENCODER_FOLD", raising=False)
    path = tmp_path / "out" / "bench.json"
    code = main(["bench", "--shapes", "16:32,8:16", "--warmup-ms", "0", "--rep-ms", "1", "--json", str(path)])

    text = capsys.readouterr().out
    assert code == 0
    assert "no CUDA GPU was found" in text
    assert "selective scan" in text and "floors" in text
    assert text.rindex("summary:") > text.rindex("selective scan")  # the summary table comes last
    data = json.loads(path.read_text())
    assert {"command", "environment", "options", "plan", "rates", "floors", "scan", "ss2d", "model",
            "summary", "ok"} <= data.keys()
    assert data["ok"] and data["environment"]["torch"] == torch.__version__
    switches = data["environment"]["switches"]
    assert switches["MAMBAAD_SCAN_LANE"] == "0" and "MAMBAAD_ENCODER_FOLD" not in switches
    assert all(k.startswith("MAMBAAD_") for k in switches)
    assert [(r["dim"], r["length"], r["backend"], r["batch"]) for r in data["scan"]] == [
        (16, 32, "torch", 1), (8, 16, "torch", 1)]
    for row in data["scan"]:
        assert row["status"] == "OK" and row["rel_err"] < 1e-6 and row["fwd_ms"] > 0
    for row in data["floors"]:
        bandwidth = data["rates"]["copy_bandwidth_Bps"]
        assert row["bw_floor_us"] == pytest.approx(row["fwd_bytes"] / bandwidth * 1e6)
    assert len(data["summary"]) == 2


@pytest.mark.parametrize(
    "args, option",
    [(["--scan", "spiral"], "--scan"), (["--dtype", "fp16"], "--dtype"), (["--shapes", "12:64"], "--shapes"),
     (["--batch", "0"], "--batch"), (["--backends", "cudnn"], "--backends")],
)
def test_bad_option_is_one_line_and_exit_2(args, option, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert option in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_triton_backend_without_a_gpu_says_so(capsys, no_gpu):
    assert main(["bench", "--backends", "triton"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--backends triton" in err and "CUDA GPU" in err and "Traceback" not in err


def test_model_throughput_runs_a_training_and_an_inference_step():
    rows = bench.bench_model((1,), torch.device("cpu"), "sweep", preset="demo", image_size=64, steps=1,
                             warmup=0)
    assert [r["variant"] for r in rows] == [name for name, _ in bench.MODEL_VARIANTS]  # fp32, the faster ones
    for row in rows:
        assert row["status"] == "OK" and row["scan_backend"] == "torch" and row["image_size"] == 64
        assert row["train_images_per_s"] > 0 and row["infer_images_per_s"] > 0


@pytest.mark.parametrize(("deterministic", "forced", "expected"),
                         [(False, None, True), (True, None, False), (False, False, False)])
def test_model_throughput_times_cudnn_algorithms_as_train_does(monkeypatch, deterministic, forced, expected):
    """train turns cudnn.benchmark on unless deterministic (engine/device.seed_everything): the benchmark
    must time the same convolutions, and leave the process's setting as it found it."""
    import importlib

    train = importlib.import_module("mambaad_cli.engine.train")  # the module (the package exports train())
    scoring = importlib.import_module("mambaad_cli.engine.scoring")
    seen = []  # the setting at every timed or warm-up call of either step

    def recording_step(*args, **kwargs):
        return lambda x: seen.append(torch.backends.cudnn.benchmark)

    monkeypatch.setattr(train, "make_train_step", recording_step)
    monkeypatch.setattr(scoring, "make_scorer", recording_step)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", not expected)
    bench.model_throughput("demo", 1, "cpu", image_size=64, steps=1, warmup=1,
                           overrides={"train.deterministic": deterministic}, cudnn_benchmark=forced)
    assert seen == [expected] * 4  # train and infer, one warm-up and one timed call each
    assert torch.backends.cudnn.benchmark is (not expected)


def test_model_throughput_times_trains_data_parallel_step_under_a_process_group(monkeypatch):
    """Under a group of 2 the timed step is train's data-parallel one: SyncBatchNorm, the DDP wrapper as
    the step's net, DDP's warm-up count, and images/s that count both processes' images (fakes: one
    process here)."""
    from mambaad_cli.engine import distributed
    from mambaad_cli.engine.graphs import DDP_WARMUP_CALLS

    train = importlib.import_module("mambaad_cli.engine.train")
    calls = {}
    wrapper = torch.nn.Identity()
    monkeypatch.setattr(distributed, "current", lambda: distributed.DistContext(0, 2, 0))
    monkeypatch.setattr(distributed, "barrier", lambda: calls.setdefault("barriers", []).append(1))
    monkeypatch.setattr(distributed, "sync_batchnorm", lambda m, d: calls.setdefault("sync_bn", m))

    def wrap(model, device, graphed):
        calls["ddp"] = graphed
        return wrapper

    monkeypatch.setattr(distributed, "data_parallel", wrap)

    def recording_step(net, model, optimizer, cfg, graphs, warmup):
        calls["step"] = (net, warmup)
        return lambda x: None

    monkeypatch.setattr(train, "make_train_step", recording_step)
    result = bench.model_throughput("demo", 3, "cpu", image_size=64, steps=1, warmup=1, phases=("train",))
    assert calls["step"] == (wrapper, DDP_WARMUP_CALLS) and calls["ddp"] is False and "sync_bn" in calls
    assert len(calls["barriers"]) == 2  # after the warm-up and after the timed steps: the slowest one's time
    assert result["train_images_per_s"] == pytest.approx(2 * 3 * 1000 / result["train_ms_per_batch"])


def test_model_throughput_script_under_torchrun_prints_one_row_for_both_processes():
    """benchmarks/model_throughput.py launched by torchrun (2 CPU processes over gloo): rank 0 alone prints,
    one row per variant and batch, and the row says 2 processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "benchmarks/model_throughput.py", "--preset", "demo", "--device", "cpu", "--image-size", "64",
           "--batch-size", "2", "--steps", "1", "--warmup", "1", "--variants", "fp32"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and "error" not in rows[0], done.stdout
    assert rows[0]["processes"] == 2 and rows[0]["batch"] == 2
    assert rows[0]["train_images_per_s"] == pytest.approx(2 * 2 * 1000 / rows[0]["train_ms_per_batch"])


def test_exp2_microkernel_matches_numpy_under_the_triton_interpreter():
    """The kernel that measures the exp2 rate computes what it claims (CPU, TRITON_INTERPRET=1)."""
    code = textwrap.dedent("""
        import numpy as np, torch
        from mambaad_cli.engine.bench_exp2 import CHAINS, exp2_chains
        x = torch.rand(32, generator=torch.Generator().manual_seed(0))
        out = exp2_chains(x, -0.7, 3, block=16).double().numpy()
        expected = 0.0
        for c in range(CHAINS):
            a = x.double().numpy() + c / 8
            for _ in range(3):
                a = np.exp2(a * -0.7)
            expected = expected + a
        print(float(np.abs(out - expected).max() / np.abs(expected).max()))
    """)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5


def _fake_directions(scale):
    """A stand-in for kernels.selective_scan_directions (the lead's fused op): per direction gather, torch
    scan, scatter back and sum; the "triton-fused" result is multiplied by `scale`."""

    def directions(u, delta, A, B, C, D, delta_bias, table, delta_softplus=True, backend="auto"):
        dn = u.shape[1]
        out = torch.zeros(u.shape, dtype=torch.float32)
        for k, idx in enumerate(table):
            ch = slice(k * dn, (k + 1) * dn)
            y = kernels.selective_scan(u[..., idx], delta[:, k][..., idx], A[ch], B[:, k][..., idx],
                                       C[:, k][..., idx], D[ch], delta_bias=delta_bias[ch],
                                       delta_softplus=delta_softplus, backend="torch")
            out[..., idx] += y.float()
        return (out * (scale if backend == "triton-fused" else 1.0)).to(u.dtype)

    return directions


@pytest.mark.parametrize("scale, status", [(1.0, "OK"), (1.01, "WRONG")])
def test_bench_ss2d_compares_fused_with_unfused(monkeypatch, scale, status):
    monkeypatch.setattr(kernels, "selective_scan_directions", _fake_directions(scale), raising=False)
    cpu = torch.device("cpu")

    gpu_times = iter(range(1, 100))

    def gpu_timer(fn):  # a stand-in for the GPU's kernel time: 1, 2, 3 ... ms in the order they are timed
        fn()
        return float(next(gpu_times))

    rows = bench.bench_ss2d((2,), ("fp32",), "hilbert", cpu, bench.make_timer(cpu, 0, 1), log=lambda _: None,
                            sizes=((8, 4), (16, 2)), gpu_timer=gpu_timer)

    assert [(r["d_inner"], r["side"], r["baseline"]) for r in rows] == [(8, 4, "cuda"), (16, 2, "cuda")]
    # each path's forward + backward, then its forward: 1 / 2 (fused), 3 / 4 (unfused), 5 / 6, 7 / 8
    for row, (fused_gpu, base_gpu) in zip(rows, [(1.0, 3.0), (5.0, 7.0)], strict=True):
        assert row["status"] == status and row["rel_err"] == pytest.approx(abs(scale - 1), abs=1e-6)
        assert row["speedup"] == pytest.approx(row["fwd_bwd_baseline_ms"] / row["fused_fwd_bwd_ms"])
        # the fused path is timed first; the summary carries the kernel-time ratio too
        assert (row["fwd_bwd_gpu_baseline_ms"], row["fused_fwd_bwd_gpu_ms"]) == (base_gpu, fused_gpu)
        assert (row["fwd_gpu_baseline_ms"], row["fused_fwd_gpu_ms"]) == (base_gpu + 1, fused_gpu + 1)
        assert row["speedup_gpu"] == base_gpu / fused_gpu
    summary = bench_tables.summary_rows({"scan": [], "ss2d": rows, "model": []})
    assert [r["speedup_gpu"] for r in summary] == [3.0, 7.0 / 5.0]


def test_a_wrong_row_makes_the_command_exit_1(monkeypatch, capsys, no_gpu):
    monkeypatch.setattr(bench, "check_forward", lambda out, ref, dtype: (0.5, "WRONG"))
    assert main(["bench", "--shapes", "8:16", "--warmup-ms", "0", "--rep-ms", "1"]) == 1
    text = capsys.readouterr().out
    assert "WRONG" in text[text.rindex("summary:"):]


def test_triton_rows_compare_with_cuda_called_alike(monkeypatch):
    # both kernels are also timed without autograd (ours: selective_scan_fwd / _bwd, under the interpreter
    # here), and the speed-up over CUDA divides those two direct times, in the rows and in the summary
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs a GPU or the Triton interpreter")
    monkeypatch.setattr(bench, "_import_selective_scan_cuda", lambda: _fake_selective_scan_cuda([], 1.0))
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    times = iter(range(1, 100))

    def timer(fn):  # one call each (the interpreter is slow); 1, 2, 3 ... ms in the order they are timed
        fn()
        return float(next(times))

    rows = bench.bench_scan((1,), ((16, 16),), ("fp32",), ("triton", "cuda"), dev, timer, bandwidth=1e10,
                            exp_rate=None, log=lambda line: None)

    ours, cuda = rows
    assert ours["status"] == "OK" and ours["fwd_bwd_direct_ms"] > 0
    assert cuda["fwd_bwd_direct_ms"] == cuda["fwd_bwd_ms"]  # the extension is always called directly
    assert ours["speedup_timed"] == "direct"
    assert ours["speedup_vs_cuda"] == pytest.approx(cuda["fwd_bwd_ms"] / ours["fwd_bwd_direct_ms"])
    (summary,) = bench_tables.summary_rows({"scan": rows, "ss2d": [], "model": []})
    assert (summary["ours_ms"], summary["baseline_ms"]) == (ours["fwd_bwd_direct_ms"], cuda["fwd_bwd_ms"])


def test_model_throughput_script_rebuilds_the_scan_tuners_for_a_config_space_variant(monkeypatch):
    """A variant that sets a MAMBAAD_SCAN_*_CONFIGS space must be timed with that space: the scan's autotuners
    are built once per process (triton_scan._tuned_kernels), so the script builds them again, before the
    variant and after it."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    script = importlib.import_module("model_throughput")
    from kernels import triton_scan

    def lane_bwd_space():  # the lane backward's tuner: its configs' (UNROLL, PREFETCH)
        tuner = triton_scan._tuned_kernels()[triton_scan.TUNED_KERNEL_NAMES.index("lane_bwd")]
        return [(c.kwargs["UNROLL"], c.kwargs["PREFETCH"]) for c in tuner.configs]

    triton_scan._tuned_kernels.cache_clear()
    default = lane_bwd_space()
    _, env, _ = script.split_variant("bf16+cl+graphs+bwdunroll2only")
    with monkeypatch.context() as m:
        for name, value in env.items():
            m.setenv(name, value)
        assert lane_bwd_space() == default  # the tuners of before: the new space alone does not reach them
        script._reset_scan_tuners()
        assert lane_bwd_space() == [(2, 1)]
    script._reset_scan_tuners()
    assert lane_bwd_space() == default != [(2, 1)]


def run_lane_sass(*args: str) -> str:
    # benchmarks/lane_sass.py's report, in a process of its own: the tests' kernels are interpreted, and it
    # compiles for sm_90
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = os.path.join(ROOT, "benchmarks", "lane_sass.py")
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300, check=True).stdout


def test_lane_sass_caps_the_registers_with_maxnreg():
    """--maxnreg reaches ptxas: at 168 registers the lane backward fits them, and the per-block code spills
    (the trade a config's MAXNREG field makes for 12 one-warp programs per SM instead of 8)."""
    out = run_lane_sass("--kernel", "bwd", "--split", "1", "--maxnreg", "168")
    assert "MAXNREG 168" in out and int(re.search(r"REG:(\d+)", out).group(1)) <= 168
    spills = [int(n) for n in re.findall(r"loop .*?: \d+ instructions, (\d+) local loads / stores", out)]
    assert spills and max(spills) > 0


def test_lane_sass_compiles_the_lane_backward_as_a_launch_specialises_it():
    """benchmarks/lane_sass.py (no GPU: Triton's ptxas for sm_90; its own process, the tests' kernels being
    interpreted). With the L strides as constants and 16-byte divisibility, as at MambaAD's shapes, the B / C
    rows of the state loop are 128-bit loads; without them (the harness before v1.25) they were 16-bit
    scalar loads, and its counts were not the GPU's code."""
    out = run_lane_sass("--kernel", "bwd", "--split", "2", "--prefetch", "4")
    loads = dict(re.findall(r"(LDG\.E(?:\.\w+)?) (\d+)", out.split("global loads: ")[1].splitlines()[0]))
    # 128-bit loads, and 16-bit ones only for single values (delta at the next block's first step): the
    # harness before v1.25 had 33 of those
    assert int(loads["LDG.E.128"]) >= 8 and int(loads.get("LDG.E.U16", 0)) <= 2
    assert "REG:" in out and re.search(r"loop .* instructions, 0 local loads / stores; .*SHFL", out)


def test_lane_sass_keeps_the_steps_layout_through_a_table():
    """The lane forward through an index table on channels-last maps (the fused SS2D path): u / delta are
    read one step per 16-bit load (gathered positions, 32 adjacent channels a warp) into each lane's row of
    steps, with no stack: before v1.28's _address_channels Triton laid those loads out with channels in the
    lanes' registers and spilled converting them (456 bytes of stack)."""
    out = run_lane_sass("--kernel", "fwd", "--split", "2", "--table", "cl")
    assert "table cl" in out and "STACK:0 " in out
    loads = dict(re.findall(r"(LDG\.E(?:\.\w+)?) (\d+)", out.split("global loads: ")[1].splitlines()[0]))
    assert int(loads.get("LDG.E.U16", 0)) >= 32  # 16 steps of u and of delta a block
    assert re.search(r"loop .* instructions, 0 local loads / stores; .*MUFU", out)


def largest_loop_counts(out: str) -> dict[str, int]:
    # lane_sass.py --count's last line: "largest loop: OP n, OP n"
    line = out.split("largest loop: ")[1].splitlines()[0]
    return {op: int(n) for op, n in (item.split() for item in line.split(", "))}


def test_lane_sass_reads_n_major_rows_one_vector_a_step():
    """B / C N-major (the lane forward's NMAJOR, v1.37): each step's 4 states of a lane in one 128-bit load
    (16 a block of 8 steps for B and C) at a constant offset, in registers (no stack, no shared memory): the
    block loop is shorter than with L-major rows (301 against 317 instructions with Triton 3.8)."""
    args = ("--kernel", "fwd", "--split", "4", "--dtype", "fp32", "--block", "8", "--prefetch", "4",
            "--shares", "--maxnreg", "128", "--count", "LDG,BAR,STS,MUFU")
    out, l_major = run_lane_sass(*args, "--nmajor"), run_lane_sass(*args)
    assert "N-major B / C" in out and "STACK:0 " in out
    counts = largest_loop_counts(out)
    assert counts["BAR"] == counts["STS"] == 0 and counts["MUFU"] >= 32 and counts["LDG"] >= 16
    loads = dict(re.findall(r"(LDG\.E(?:\.\w+)?) (\d+)", out.split("global loads: ")[1].splitlines()[0]))
    assert int(loads["LDG.E.128"]) >= 16

    def loop(report):
        return max(int(n) for n in re.findall(r"loop .*?: (\d+) instructions", report))
    assert loop(out) < loop(l_major)


def test_lane_sass_layout_hint_costs_no_instruction_per_element():
    """The int8 layout hint (triton_seg._layout_hint) on NVIDIA GPUs is an inline copy that names the hint's
    load without reading it: the lane forward's block loop converts no int8 (I2F) and adds nothing for it.
    As x + 0.0 * hint (v1.28, -0.0 being no identity) every element of delta paid a conversion, a sign
    select and an add (local sm_90 compile: 1565 -> 1497 instructions a block, v1.29)."""
    out = run_lane_sass("--kernel", "fwd", "--split", "2", "--count", "I2F,MUFU")
    counts = largest_loop_counts(out)
    assert counts["MUFU"] >= 128 and counts["I2F"] == 0  # the loop found (16 steps x 8 states of exp2)
    assert "STACK:0 " in out


def test_lane_sass_fused_adds_stay_in_the_steps_layout():
    """Through a table the forward adds its output into the shared fp32 map by one `red` per element in the
    steps' layout: no trip through shared memory (tl.atomic_add moved the tile and its 64-bit addresses there
    first: two barriers a block, v1.28). Since v1.32 each of a channel's two lanes adds its half of the 16
    steps (triton_lane._steps_out), unpredicated on a full map: 8 reds a lane, none in a branch of its own
    (v1.31: 16 reds on the lead lane, each wrapped in BSSY / BRA / BSYNC by ptxas)."""
    out = run_lane_sass("--kernel", "fwd", "--split", "2", "--table", "cl",
                        "--count", "REDG,BAR,STS,LDS,BSSY")
    counts = largest_loop_counts(out)
    assert counts["REDG"] == 8 and counts["BAR"] == counts["STS"] == counts["LDS"] == 0
    assert counts["BSSY"] <= 1
    assert "SHARED:0 " in out


def test_lane_sass_prefetches_the_next_blocks_steps():
    """PREFETCH 6 (the lane forward's default at 16-step blocks since v1.29): the B / C rows' prefetches (one
    per state and row: 2 x 8 at two lanes a channel) and one each for the next block's u and delta, without
    spilling."""
    counts = {}
    for prefetch in ("2", "6"):
        out = run_lane_sass("--kernel", "fwd", "--split", "2", "--prefetch", prefetch, "--count", "CCTL")
        assert re.search(r"loop .* instructions, 0 local loads / stores", out)
        counts[prefetch] = largest_loop_counts(out)["CCTL"]
    assert counts["2"] == 16 and counts["6"] == 18


def test_lane_sass_scaled_positions_take_no_multiply_per_step():
    """Through a table whose positions the host scaled by the maps' shared L stride (_table_positions) the
    lane forward's steps take no uniform multiply (UIMAD) for their addresses, and the block is shorter than
    with v1.30's positions (a multiply per step and map, then a move to the vector registers)."""
    sizes, uimad = {}, {}
    for table in ("cl-scaled", "cl"):
        out = run_lane_sass("--kernel", "fwd", "--split", "2", "--prefetch", "6", "--table", table, "--count",
                            "UIMAD")
        sizes[table] = max(int(n) for n in re.findall(r"loop .*?: (\d+) instructions", out))
        uimad[table] = largest_loop_counts(out)["UIMAD"]
    assert uimad["cl-scaled"] == 0 and uimad["cl"] >= 32
    assert sizes["cl-scaled"] < sizes["cl"] - 100


def test_ss2d_module_script_checks_the_fused_core_in_the_module():
    """benchmarks/ss2d_module.py on a CPU (Triton's interpreter, one tiny map): the SS2D module with the fused
    core agrees with its default order, output and every gradient, with either dt_proj (a way's knobs)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    ways = "triton@MAMBAAD_SS2D_FUSED_SIDES=none,triton-fused,triton-fused@MAMBAAD_DT_PROJ_TOKENS=einsum"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ss2d_module.py"), "--check-only",
                          "--dtypes", "fp32", "--ways", ways], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=600, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    assert row["dtype"] == "fp32" and not any(key.endswith("_gpu_ms") for key in row)
    for way in ways.split(",")[1:]:
        assert 0 <= row[f"{way}_rel"] < 1e-5, way


def test_ss2d_fused_script_checks_the_ways_against_each_other():
    """benchmarks/ss2d_fused.py on a CPU (Triton's interpreter, one tiny map): the fused lane path and the
    unfused one around our scan agree, a way that cannot run here (mamba_ssm) says why instead, and
    --baseline imports another kernels/ tree (here this one: the same result) as way fused-baseline."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    ways = "fused-lane,fused-baseline,unfused-triton,unfused-cuda"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ss2d_fused.py"), "--check-only",
                          "--dtypes", "fp32", "--ways", ways, "--baseline", os.path.join(ROOT, "kernels")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    assert row["dtype"] == "fp32" and row["unfused-triton_rel"] < 1e-5 and row["fused-baseline_rel"] == 0.0
    assert "unfused-cuda_error" in row and "fused-lane_error" not in row


def test_ss2d_fused_script_sweeps_config_spaces_in_one_process():
    """--configs: the ways once per config space of this tree's kernels (scan_ab.py's syntax), a row each,
    named; here the lane kernels with one lane a channel and with two, each checked against the unfused
    way."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ss2d_fused.py"), "--check-only",
                          "--dtypes", "fp32", "--ways", "unfused-triton,fused-lane", "--configs",
                          "auto;LANE_SPLIT=2&LANE_BWD_SPLIT=2"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=True).stdout
    rows = [json.loads(line) for line in out.strip().splitlines() if line.startswith("{")]
    assert [row["configs"] for row in rows] == ["auto", "LANE_SPLIT=2&LANE_BWD_SPLIT=2"]
    assert all(row["fused-lane_rel"] < 1e-5 for row in rows)


def test_ncu_stalls_sums_samples_per_reason_loop_and_instruction(tmp_path):
    """benchmarks/ncu_stalls.py on a source page shaped as ncu writes it (a kernel line, then the columns):
    the loop is found from its backward branch, shares are of all samples, and the top instruction names its
    leading reason."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import ncu_stalls

    names = ["Address", "Source", ncu_stalls.SAMPLES, "stall_long_sb", "stall_wait",
             "stall_long_sb (Not Issued)"]
    code = [("0x100", "MOV R1, R2", 2, 0, 2), ("0x110", "LDG.E R3, [R4.64]", 10, 0, 10),
            ("0x120", "FADD R5, R3, R3", 60, 55, 5), ("0x130", "@P0 BRA 0x110", 8, 0, 8),
            ("0x140", "EXIT", 20, 0, 20)]
    lines = ['"Kernel Name","k",', ",".join(f'"{n}"' for n in names)]
    # the Not-Issued column is a subset of its reason's samples: never added to the totals
    lines += [",".join(f'"{v}"' for v in (a, s, n, lsb, w, lsb // 2)) for a, s, n, lsb, w in code]
    path = tmp_path / "sass.csv"
    path.write_text("\n".join(lines) + "\n")
    report = ncu_stalls.report(*ncu_stalls.read_source_page(path), top=2)
    assert report[0].startswith("100 samples; long_sb 55.0 %, wait 45.0 %")
    assert report[1].startswith("loop rows 1-3 (3 instructions): 78.0 % of samples; "
                                "long_sb 70.5 %, wait 29.5 %")
    assert "60.0 % long_sb" in report[2] and "FADD R5, R3, R3" in report[2]
    assert "EXIT" in report[3] and len(report) == 4


def test_lane_sass_pairs_share_each_b_and_c_load_between_two_channels():
    """The lane forward with two channel sets a lane (--pairs, MAMBAAD_SCAN_LANE_PAIRS): each lane runs
    twice the element-states of a block (twice the exp2) with the same B / C row loads, and the same stores
    per channel set; at 4 lanes with step shares, 8-step blocks (the fp32 pick), local sm_90 compile."""
    args = ("--kernel", "fwd", "--split", "4", "--dtype", "fp32", "--shares", "--block", "8", "--count",
            "MUFU,LDG,STG")
    one = largest_loop_counts(run_lane_sass(*args))
    out = run_lane_sass(*args, "--pairs")
    two = largest_loop_counts(out)
    assert "PAIRS" in out and "STACK:0 " in out
    assert two["MUFU"] == 2 * one["MUFU"] >= 64  # 4 states x 8 steps of exp2, twice
    # the B / C rows (16 loads a block) once for both sets, u and delta (2 each) per set
    assert one["LDG"] >= 16 and two["LDG"] == one["LDG"] + 2
    assert two["STG"] == 2 * one["STG"]
