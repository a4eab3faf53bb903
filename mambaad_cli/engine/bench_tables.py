"""Rich tables of `mambaad bench` results (rows as bench.py makes them) and the closing summary."""

from __future__ import annotations

from typing import Any

from rich.table import Table

NA = "n/a"


def _num(value: Any, fmt: str) -> str:
    return NA if value is None else format(value, fmt)


def _rate(value: Any) -> str:
    """GB/s or a percentage: whole numbers, two decimals below 10 (CPU rows are small)."""
    return NA if value is None else format(value, ".2f" if abs(value) < 10 else ".0f")


def _status(row: dict[str, Any]) -> str:
    status = row.get("status", NA)
    return status if status == "OK" else f"[red bold]{status}[/red bold]"


def _table(title: str, columns: list[str], left: int = 0) -> Table:
    """A table whose first `left` columns are left-aligned labels and the rest right-aligned numbers."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < left else "right", style="cyan" if i == 0 else None)
    return table


def floors_table(rows: list[dict[str, Any]]) -> Table:
    table = _table("floors of one scan call (forward)", ["batch", "D", "L", "dtype", "fwd MB", "BW floor us",
                                                         "exp floor us", "max us", "bwd MB", "bwd floor us"])
    for r in rows:
        table.add_row(
            str(r["batch"]), str(r["dim"]), str(r["length"]), r["dtype"], f"{r['fwd_bytes'] / 1e6:.1f}",
            f"{r['bw_floor_us']:.1f}", _num(r["exp_floor_us"], ".1f"), f"{r['floor_us']:.1f}",
            f"{r['bwd_bytes'] / 1e6:.1f}", f"{r['bwd_floor_us']:.1f}",
        )
    return table


def scan_table(rows: list[dict[str, Any]]) -> Table:
    table = _table(
        "selective scan (N=16, G=8; ms = median wall clock; f+b through autograd, direct without it; GPU = "
        "kernel time alone; x cuda: direct against direct)",
        ["batch", "D", "L", "dtype", "backend", "fwd ms", "bwd ms", "f+b ms", "f+b direct", "f+b GPU",
         "fwd GB/s", "fwd %floor", "fwd %floor GPU", "bwd %floor", "x cuda", "x cuda GPU", "rel err",
         "check"],
        left=0,
    )
    for r in rows:
        table.add_row(
            str(r["batch"]), str(r["dim"]), str(r["length"]), r["dtype"], r["backend"],
            _num(r.get("fwd_ms"), ".3f"), _num(r.get("bwd_ms"), ".3f"), _num(r.get("fwd_bwd_ms"), ".3f"),
            _num(r.get("fwd_bwd_direct_ms"), ".3f"), _num(r.get("fwd_bwd_gpu_ms"), ".3f"),
            _rate(r.get("fwd_GBps")), _rate(r.get("fwd_pct_floor")), _rate(r.get("fwd_pct_floor_gpu")),
            _rate(r.get("bwd_pct_floor")),
            _num(r.get("speedup_vs_cuda"), ".2f"), _num(r.get("speedup_gpu_vs_cuda"), ".2f"),
            _num(r.get("rel_err"), ".1e"), _status(r),
        )
    return table


def ss2d_table(rows: list[dict[str, Any]]) -> Table:
    base = rows[0]["baseline"] if rows else NA
    table = _table(
        f"SS2D core, K=8 N=16, scan {rows[0]['scan'] if rows else NA}: fused triton vs unfused {base} (ms)",
        ["batch", "d_inner", "HxW", "dtype", "fused fwd", "fused f+b", f"{base} fwd", f"{base} f+b",
         "speed-up", "f+b GPU", f"{base} GPU", "x GPU time", "rel err", "check"],
    )
    for r in rows:
        table.add_row(
            str(r["batch"]), str(r["d_inner"]), f"{r['side']}x{r['side']}", r["dtype"],
            _num(r.get("fused_fwd_ms"), ".3f"), _num(r.get("fused_fwd_bwd_ms"), ".3f"),
            _num(r.get("fwd_baseline_ms"), ".3f"), _num(r.get("fwd_bwd_baseline_ms"), ".3f"),
            _num(r.get("speedup"), ".2f"), _num(r.get("fused_fwd_bwd_gpu_ms"), ".3f"),
            _num(r.get("fwd_bwd_gpu_baseline_ms"), ".3f"), _num(r.get("speedup_gpu"), ".2f"),
            _num(r.get("rel_err"), ".1e"), _status(r),
        )
    return table


def model_table(rows: list[dict[str, Any]]) -> Table:
    table = _table("MambaAD throughput (random weights; fp32 = as the paper, bf16+cl = bf16 autocast, "
                   "channels-last)", [
        "preset", "variant", "batch", "size", "scan", "backend", "train img/s", "infer img/s", "train ms",
        "infer ms", "peak GiB", "check"], left=6)
    for r in rows:
        table.add_row(
            r["preset"], r.get("variant", "fp32"), str(r["batch"]), str(r.get("image_size", NA)), r["scan"],
            r["scan_backend"],
            _num(r.get("train_images_per_s"), ".1f"), _num(r.get("infer_images_per_s"), ".1f"),
            _num(r.get("train_ms_per_batch"), ".1f"), _num(r.get("infer_ms_per_batch"), ".1f"),
            _num(r.get("peak_memory_gib"), ".1f"), _status(r),
        )
    return table


def _worst(*rows: dict[str, Any] | None) -> str:
    bad = [r.get("status", "ERROR") for r in rows if r is not None and r.get("status") != "OK"]
    return bad[0] if bad else "OK"


def comparable_ms(row: dict[str, Any], cuda: dict[str, Any]) -> tuple[float, float, str]:
    """(ours, cuda) forward + backward ms timed alike: both called directly where both were, else both as
    they ran (autograd for ours), and which of the two."""
    if row.get("fwd_bwd_direct_ms") and cuda.get("fwd_bwd_direct_ms"):
        return row["fwd_bwd_direct_ms"], cuda["fwd_bwd_direct_ms"], "direct"
    return row["fwd_bwd_ms"], cuda["fwd_bwd_ms"], "as run"


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per scan shape (ours against mamba_ssm's CUDA), per SS2D size and per model mode."""
    rows: list[dict[str, Any]] = []
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in result["scan"]:
        groups.setdefault((r["batch"], r["dim"], r["length"], r["dtype"]), {})[r["backend"]] = r
    for (batch, dim, length, dtype), by_backend in groups.items():
        ours_name = next((b for b in ("triton", "torch", "cuda") if b in by_backend), None)
        ours = by_backend[ours_name]
        base = by_backend.get("cuda") if ours_name != "cuda" else None
        ours_ms, base_ms = ours.get("fwd_bwd_ms"), None
        if base and ours_ms is not None and base.get("fwd_bwd_ms") is not None:
            ours_ms, base_ms, _ = comparable_ms(ours, base)  # the two times the speed-up divides
        rows.append({
            "what": "scan", "batch": batch, "dtype": dtype, "shape": f"{dim}x{length}",
            "ours": ours_name, "ours_ms": ours_ms,
            "baseline": "cuda" if base else None, "baseline_ms": base_ms,
            "speedup": ours.get("speedup_vs_cuda") if base else None,
            "speedup_gpu": ours.get("speedup_gpu_vs_cuda") if base else None,
            "fwd_pct_floor": ours.get("fwd_pct_floor"), "fwd_pct_floor_gpu": ours.get("fwd_pct_floor_gpu"),
            "images_per_s": None, "status": _worst(ours, base),
        })
    for r in result["ss2d"]:
        rows.append({
            "what": "ss2d", "batch": r["batch"], "dtype": r["dtype"],
            "shape": f"{r['d_inner']}@{r['side']}x{r['side']}", "ours": "fused",
            "ours_ms": r.get("fused_fwd_bwd_ms"), "baseline": r["baseline"],
            "baseline_ms": r.get("fwd_bwd_baseline_ms"), "speedup": r.get("speedup"),
            "speedup_gpu": r.get("speedup_gpu"),
            "fwd_pct_floor": None, "images_per_s": None, "status": _worst(r),
        })
    for r in result["model"]:
        for mode in ("train", "infer"):
            rows.append({
                "what": f"model {mode}", "batch": r["batch"], "dtype": r.get("variant", "fp32"),
                "shape": f"{r.get('image_size', NA)}px", "ours": r["scan_backend"],
                "ours_ms": r.get(f"{mode}_ms_per_batch"), "baseline": None, "baseline_ms": None,
                "speedup": None, "speedup_gpu": None, "fwd_pct_floor": None,
                "images_per_s": r.get(f"{mode}_images_per_s"),
                "status": _worst(r),
            })
    return rows


def summary_table(result: dict[str, Any]) -> Table:
    """The closing table: f+b ms of ours and the baseline, speed-up (wall clock, and GPU time alone where
    measured), % of floor, images/s, check."""
    env = result["environment"]
    table = _table(
        f"summary: {env['name']}, torch {env['torch']}, triton {env['triton']} (fwd+bwd ms)",
        ["what", "batch", "dtype", "shape", "ours", "ours ms", "baseline", "base ms", "speed-up",
         "x GPU time", "fwd %floor", "fwd %floor GPU", "img/s", "check"],
        left=1,
    )
    for r in result["summary"]:
        table.add_row(
            r["what"], str(r["batch"]), r["dtype"], r["shape"], r["ours"] or NA, _num(r["ours_ms"], ".3f"),
            r["baseline"] or NA, _num(r["baseline_ms"], ".3f"), _num(r["speedup"], ".2f"),
            _num(r.get("speedup_gpu"), ".2f"), _rate(r["fwd_pct_floor"]), _rate(r.get("fwd_pct_floor_gpu")),
            _num(r["images_per_s"], ".1f"),
            _status(r),
        )
    return table
