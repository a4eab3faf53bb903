# ruff: noqa: B023, E501  (a developer script: closures are called inside the loop that defines them)
"""Development check-and-time script for the Triton scan on a GPU (one device call does everything).

    python benchmarks/scan_gpu_dev.py --sdist .devcarry/vendor/mamba_ssm-2.3.2.post1.tar.gz --json out.json

1. builds mamba_ssm's selective_scan_cuda for this GPU (benchmarks/build_mamba_cuda.py), in a thread while
2. the Triton kernel is checked against the float64 torch path (forward and every gradient, fp32 and bf16,
   plain and fused through direction tables), then
3. times Triton against the CUDA kernel on MambaAD's shapes (forward, backward) and the fused SS2D core
   against the unfused one. The user-facing table is ``mambaad bench``; this is the kernel developer's loop.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import torch

from kernels import selective_scan, selective_scan_directions
from mambaad_cli.model.scans import direction_tables

SHAPES = [(1024, 4096), (2048, 1024), (4096, 256), (8192, 64)]
N = 16


def inputs(batch, dim, length, dtype, groups=8, seed=0, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device)  # noqa: E731
    u = r(batch, dim, length).to(dtype)
    delta = (r(batch, dim, length) * 0.5 - 1.0).to(dtype)
    A = -torch.arange(1, N + 1, device=device, dtype=torch.float32).repeat(dim, 1)
    B = r(batch, groups, N, length).to(dtype)
    C = r(batch, groups, N, length).to(dtype)
    D = torch.ones(dim, device=device)
    bias = (r(dim) * 0.5 - 3.0).float()
    return u, delta, A, B, C, D, bias


def rel(a, b):
    """Relative L2 error; the absolute one where the reference is exactly zero (dA at L = 1: rounding of
    terms that cancel gave 1e-10 against 0, which a 1e-30 clamp turned into "1e20")."""
    ref_norm = b.double().norm()
    return ((a.double() - b.double()).norm() / (ref_norm if ref_norm > 0 else 1.0)).item()


def channels_last(t):
    """Same values, stride 1 over channels (dim 1): the layout the rows kernels (v3, MAMBAAD_SCAN_ROWS=1) are for."""
    return t.movedim(1, -1).contiguous().movedim(-1, 1)


def n_major(t):
    """Same (batch, G, N, L) values, (batch, G, L, N) underneath: the lane forward's NMAJOR rows (v1.37)."""
    return t.transpose(2, 3).contiguous().transpose(2, 3)


def check_plain(batch, dim, length, dtype, backend="triton", layout="mamba"):
    xs = inputs(batch, dim, length, dtype, seed=length)
    if layout == "channels-last":
        xs = (channels_last(xs[0]), channels_last(xs[1]), *xs[2:])
    ref_in = [x.detach().double().requires_grad_() for x in xs]
    test_in = [x.detach().clone().requires_grad_() for x in xs]
    u, delta, A, B, C, D, bias = ref_in
    ref = selective_scan(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True, backend="torch")
    u, delta, A, B, C, D, bias = test_in
    out = selective_scan(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True, backend=backend)
    dout = torch.randn_like(ref)
    ref.backward(dout)
    out.backward(dout.to(out.dtype))
    errs = {"out": rel(out, ref)}
    for name, a, r in zip(("u", "delta", "A", "B", "C", "D", "bias"), test_in, ref_in, strict=True):
        errs[name] = rel(a.grad, r.grad)
    return errs


def dir_inputs(batch, dn, side, dtype, method="hilbert", K=8, seed=0):
    L = side * side
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    u = r(batch, dn, L).to(dtype)
    delta = (r(batch, K, dn, L) * 0.5 - 1.0).to(dtype)
    A = -torch.arange(1, N + 1, device="cuda", dtype=torch.float32).repeat(K * dn, 1)
    B = r(batch, K, N, L).to(dtype)
    C = r(batch, K, N, L).to(dtype)
    D = torch.ones(K * dn, device="cuda")
    bias = (r(K * dn) * 0.5 - 3.0).float()
    table = direction_tables(method, side, side, K).cuda()
    return [u, delta, A, B, C, D, bias], table


def tokens_outermost(xs):
    """u, delta, B, C of the direction inputs with the token axis outermost in memory, as SS2D gives them
    to the fused kernel; the other inputs unchanged."""
    return [x.movedim(-1, 1).contiguous().movedim(1, -1) if i in (0, 1, 3, 4) else x for i, x in enumerate(xs)]


def check_dirs(batch, dn, side, dtype, layout="mamba"):
    xs, table = dir_inputs(batch, dn, side, dtype, seed=side)
    if layout == "channels-last":  # as SS2D gives the fused kernel: tokens outermost
        xs = tokens_outermost(xs)
    ref_in = [x.detach().double().requires_grad_() for x in xs]
    test_in = [x.detach().clone().requires_grad_() for x in xs]
    ref = selective_scan_directions(*ref_in, table, backend="torch")
    out = selective_scan_directions(*test_in, table, backend="triton-fused")
    dout = torch.randn_like(ref)
    ref.backward(dout)
    out.backward(dout.to(out.dtype))
    errs = {"out": rel(out, ref)}
    for name, a, r in zip(("u", "delta", "A", "B", "C", "D", "bias"), test_in, ref_in, strict=True):
        errs[name] = rel(a.grad, r.grad)
    return errs


def bench(fn, warmup=25, rep=100):
    import triton

    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def time_plain(batch, dim, length, dtype, have_cuda, layout="mamba"):
    u, delta, A, B, C, D, bias = inputs(batch, dim, length, dtype)
    res = {}
    cuda_inputs = (u, delta)
    if layout == "channels-last":  # stride 1 over channels (kernels/NOTES.md, v3)
        u, delta = channels_last(u), channels_last(delta)
    # Triton through autograd
    leaves = [t.detach().requires_grad_() for t in (u, delta, B, C)]
    uu, dd, BB, CC = leaves

    def fwd_train():
        return selective_scan(uu, dd, A, BB, CC, D=D, delta_bias=bias, delta_softplus=True, backend="triton")

    with torch.no_grad():
        res["triton_fwd_infer"] = bench(lambda: selective_scan(u, delta, A, B, C, D=D, delta_bias=bias,
                                                               delta_softplus=True, backend="triton"))
    res["triton_fwd"] = bench(fwd_train)
    out = fwd_train()
    dout = torch.randn_like(out)
    res["triton_bwd"] = bench(lambda: torch.autograd.grad(out, leaves, dout, retain_graph=True))
    if have_cuda:
        import selective_scan_cuda as ext

        u, delta = cuda_inputs  # mamba_ssm needs time-contiguous inputs
        dl = delta.to(u.dtype)
        res["cuda_fwd"] = bench(lambda: ext.fwd(u, dl, A, B, C, D, None, bias, True))
        o, x, *_ = ext.fwd(u, dl, A, B, C, D, None, bias, True)
        do = dout.to(o.dtype).contiguous()
        res["cuda_bwd"] = bench(lambda: ext.bwd(u, dl, A, B, C, D, None, bias, do, x, o, None, True, False))
    return res


def time_dirs(batch, dn, side, dtype, backend_unfused, layout="mamba"):
    xs, table = dir_inputs(batch, dn, side, dtype)
    if layout == "channels-last":  # as SS2D gives the fused kernel: tokens outermost
        xs = tokens_outermost(xs)
    res = {}
    for label, backend in (("fused", "triton-fused"), ("unfused", backend_unfused)):
        leaves = [x.detach().requires_grad_() if x.is_floating_point() and i in (0, 1, 3, 4) else x
                  for i, x in enumerate(xs)]
        if backend == "triton_unfused":
            from kernels.directions import selective_scan_directions_unfused

            def run(*a):
                return selective_scan_directions_unfused(*a, backend="triton")
        else:
            def run(*a):
                return selective_scan_directions(*a, backend=backend)
        out = run(*leaves, table)
        dout = torch.randn_like(out)
        grads = [leaves[i] for i in (0, 1, 3, 4)]

        def step():
            o = run(*leaves, table)
            torch.autograd.grad(o, grads, dout)

        res[f"{label}_fwdbwd"] = bench(step)
    return res


def copy_bandwidth():
    x = torch.empty(2 * 1024**3 // 4, device="cuda")
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / (ms * 1e-3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--batches", default="16")
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--layout", default="mamba", choices=("mamba", "channels-last"))
    ap.add_argument("--no-dirs", dest="dirs", action="store_false")
    ap.add_argument("--chunks", default="128", help="chunk lengths to time, comma-separated (first: with CUDA)")
    args = ap.parse_args()
    print("GPU", torch.cuda.get_device_name(), "torch", torch.__version__, flush=True)
    import triton

    print("triton", triton.__version__, flush=True)
    build_state = {}

    def build_cuda():
        t0 = time.time()
        try:
            from build_mamba_cuda import build

            build(args.sdist, Path("/tmp/mamba_cuda"))
            build_state["ok"] = True
        except Exception as e:  # the baseline is optional: report and continue
            build_state["error"] = repr(e)
        build_state["seconds"] = time.time() - t0

    thread = None
    if args.sdist:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        thread = threading.Thread(target=build_cuda)
        thread.start()
    results = {"checks": [], "plain": [], "dirs": []}
    if not args.skip_checks:
        for dtype in (torch.float32, torch.bfloat16):
            for (b, d, L) in ((2, 64, 300), (2, 48, 64), (1, 16, 1), (2, 32, 4096)):
                t0 = time.time()
                e = check_plain(b, d, L, dtype, layout=args.layout)
                print("check plain", dtype, (b, d, L), {k: f"{v:.1e}" for k, v in e.items()},
                      f"{time.time() - t0:.1f}s", flush=True)
                results["checks"].append({"kind": "plain", "dtype": str(dtype), "shape": (b, d, L), **e})
            for (b, dn, side) in ((2, 16, 16), (1, 8, 8), (1, 4, 7)):
                e = check_dirs(b, dn, side, dtype, layout=args.layout)
                print("check dirs", dtype, (b, dn, side), {k: f"{v:.1e}" for k, v in e.items()}, flush=True)
                results["checks"].append({"kind": "dirs", "dtype": str(dtype), "shape": (b, dn, side), **e})
    bw = copy_bandwidth()
    results["copy_bandwidth"] = bw
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    if thread:
        thread.join()
    print("cuda build", build_state, flush=True)
    have_cuda = bool(build_state.get("ok"))
    if have_cuda:
        e = check_plain(2, 64, 300, torch.float32, backend="cuda")
        print("check cuda-backend vs torch", {k: f"{v:.1e}" for k, v in e.items()}, flush=True)
    import os

    from kernels import triton_scan

    chunks = args.chunks.split(",")
    for variant in chunks:
        os.environ["MAMBAAD_SCAN_CHUNK"] = variant
        e = check_plain(2, 64, 300, torch.float32, layout=args.layout)
        print("variant", variant, "check", {k: f"{v:.1e}" for k, v in e.items()}, flush=True)
        if args.dirs:
            e = check_dirs(2, 16, 16, torch.float32, layout=args.layout)
            print("variant", variant, "check dirs", {k: f"{v:.1e}" for k, v in e.items()}, flush=True)
        for batch in [int(b) for b in args.batches.split(",")]:
            for dtype in [getattr(torch, name) for name in args.dtypes.split(",")]:
                for dim, L in SHAPES:
                    r = time_plain(batch, dim, L, dtype, have_cuda and variant == chunks[0], args.layout)
                    row = {"chunk": variant, "batch": batch, "dim": dim, "L": L,
                           "dtype": str(dtype).replace("torch.", ""), **r}
                    results["plain"].append(row)
                    print(json.dumps(row), flush=True)
        for dtype in (torch.float32,) if args.dirs else ():
            for dn, side in ((128, 64), (256, 32), (512, 16), (1024, 8)):
                r = time_dirs(16, dn, side, dtype, "cuda" if have_cuda else "torch", args.layout)
                row = {"chunk": variant, "dn": dn, "side": side, "dtype": str(dtype), **r}
                results["dirs"].append(row)
                print(json.dumps(row), flush=True)
    fwd_k, bwd_k, *_ = triton_scan._tuned_kernels()
    results["tuned"] = {"fwd": {str(k): str(v) for k, v in fwd_k.cache.items()},
                        "bwd": {str(k): str(v) for k, v in bwd_k.cache.items()}}
    print("autotune fwd", results["tuned"]["fwd"])
    print("autotune bwd", results["tuned"]["bwd"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("\n== summary (ms) ==")
    cuda_ref = {(r["batch"], r["dim"], r["L"], r["dtype"]): r for r in results["plain"] if "cuda_fwd" in r}
    for r in results["plain"]:
        tf, tb = r["triton_fwd"], r["triton_bwd"]
        base = cuda_ref.get((r["batch"], r["dim"], r["L"], r["dtype"]), {})
        r = {**base, **r}
        line = f"T{r['chunk']} B{r['batch']} D{r['dim']} L{r['L']} {r['dtype']}: triton fwd {tf:.3f} (infer {r['triton_fwd_infer']:.3f}) bwd {tb:.3f}"
        if "cuda_fwd" in r:
            cf, cb = r["cuda_fwd"], r["cuda_bwd"]
            line += f" | cuda fwd {cf:.3f} bwd {cb:.3f} | speedup {(cf + cb) / (tf + tb):.2f}x"
        print(line)
    for r in results["dirs"]:
        print(f"T{r['chunk']} SS2D Dn{r['dn']} {r['side']}^2: fused {r['fused_fwdbwd']:.3f} unfused {r['unfused_fwdbwd']:.3f} "
              f"speedup {r['unfused_fwdbwd'] / r['fused_fwdbwd']:.2f}x")


if __name__ == "__main__":
    main()
