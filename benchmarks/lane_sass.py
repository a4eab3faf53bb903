"""Compile a lane scan kernel for sm_90 on this machine (no GPU needed) and count its SASS: registers, stack,
and the instructions of its loops, most frequent opcodes first.

    python benchmarks/lane_sass.py --kernel bwd --split 2 --prefetch 5
    python benchmarks/lane_sass.py --kernel fwd --split 2 --bc fp32      # B / C rows in fp32
    python benchmarks/lane_sass.py --kernel fwd --split 1 --dtype fp32   # every input in fp32
    python benchmarks/lane_sass.py --kernel bwd --split 1 --maxnreg 168  # 12 one-warp programs per SM
    python benchmarks/lane_sass.py --kernel fwd --table cl               # the fused path, channels-last
    python benchmarks/lane_sass.py --kernel fwd --table cl-scaled        # with MAMBAAD_SCAN_TABLE_SCALE=1
    python benchmarks/lane_sass.py --kernel fwd --count I2F,BAR,REDG     # these opcodes in the largest loop

It gives the kernel what a launch at MambaAD's shapes gives it: Triton specialises integer arguments equal
to 1 (the L strides of the model's tensors) as constants and marks pointers and integers divisible by 16 as
such. Without those (the harness of sessions 16-26) the B / C rows compile to scalar loads, not the 128-bit
ones the GPU runs (kernels/NOTES.md, v1.25). Triton's own ptxas and cuobjdump do the work.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

L_STRIDES = ("su_l", "sdt_l", "sB_l", "sC_l", "sz_l", "so_l", "sdu_l", "sdd_l")  # sdd_l: since v1.35
D_STRIDES = ("su_d", "sdt_d", "sz_d", "so_d", "sdu_d")  # 1 on channels-last maps (the fused path's)
BF16_PTRS = ("u_ptr", "dt_ptr", "B_ptr", "C_ptr", "z_ptr", "dout_ptr", "out_ptr", "du_ptr", "ddt_ptr",
             "dz_ptr")


def compile_lane(kernel: str, split: int, prefetch: int, unroll: int, bc: str, block: int, maxnreg: int = 0,
                 table: str = "none", dtype: str = "bf16", shares: bool = False, pairs: bool = False,
                 nmajor: bool = False):
    """The compiled kernel (triton's CompiledKernel) for bf16 inputs, N = 16, D, bias and softplus, no z.
    table: none, or the fused path's index table with u / delta / the output channels-last ("cl": their
    channel strides 1, their L strides a multiply per step; "cl-scaled": their L strides 1 as the opt-in
    scaled positions give them, triton_scan._table_positions; B / C unit L stride in both) or channel-major
    ("cm"). nmajor: B / C N-major (state stride 1, L stride N = 16: the forward's NMAJOR)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels.triton_lane import _scan_bwd_lane_kernel, _scan_fwd_lane_kernel

    fn = _scan_bwd_lane_kernel if kernel == "bwd" else _scan_fwd_lane_kernel
    consts = {"N": 16, "NP": 16, "HAS_D": True, "HAS_Z": False, "HAS_BIAS": True, "SOFTPLUS": 2,
              "HAS_TABLE": table != "none", "UNROLL": unroll, "FAST_EXP": True, "EVEN_L": True, "BD": 32,
              "E": block, "PREFETCH": prefetch, "SPLIT": split, "EVEN_D": table != "none"}
    if kernel == "bwd":  # the 16-step checkpoints (T = E: no pass over the chunk first), PTX reductions
        consts.update(T=block, PTX_RED=True, SHARES=shares)
    else:
        consts.update(T=128, STORE_CKPT=True, SHARES=shares, PAIRS=pairs, NMAJOR=nmajor)
    unit = (D_STRIDES + L_STRIDES if table == "cl-scaled" else D_STRIDES + ("sB_l", "sC_l")
            if table == "cl" else L_STRIDES)
    if nmajor:  # B / C: state stride 1, L stride 16 (a divisible integer, as a launch marks it)
        unit = tuple(name for name in unit if name not in ("sB_l", "sC_l")) + ("sB_n", "sC_n")
    consts.update({name: 1 for name in unit})
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            signature[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            # B / C rows in fp32 on request; through a table the output and du are fp32 maps added into
            fp32 = (dtype == "fp32" or name in ("B_ptr", "C_ptr") and bc == "fp32"
                    or name in ("out_ptr", "du_ptr") and table != "none")
            signature[name] = ("*i32" if name == "table_ptr" else "*bf16" if name in BF16_PTRS and not fp32
                               else "*fp32")
        else:
            signature[name] = "i32"
        attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn, signature, {name: consts[name] for name in fn.arg_names if name in consts}, attrs)
    options = {"num_warps": 1, "num_stages": 3, **({"maxnreg": maxnreg} if maxnreg else {})}
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


def disassemble(cubin: bytes) -> tuple[str, str]:
    """(resource usage, SASS) of a cubin, by the cuobjdump that ships with Triton."""
    import triton

    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        Path(path).write_bytes(cubin)
        usage, sass = (subprocess.run([tools / "cuobjdump", flag, path], capture_output=True, text=True,
                                      check=True).stdout for flag in ("-res-usage", "-sass"))
    return usage, sass


def sass_report(cubin: bytes, top: int = 12, count: tuple[str, ...] = ()) -> list[str]:
    """Registers and stack (cuobjdump -res-usage), then each loop (a backward branch) with its instruction
    count and most frequent opcodes, largest first; with count, a last line of those opcodes' counts in the
    largest loop (0 where absent)."""
    usage, sass = disassemble(cubin)
    lines = [" ".join(line.split()) for line in usage.splitlines() if "REG" in line]
    code = [(int(m.group(1), 16), m.group(2)) for m in
            (re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line) for line in sass.splitlines()) if m]
    index = {address: i for i, (address, _) in enumerate(code)}
    lines.append(f"{len(code)} instructions")
    loads = Counter(re.findall(r"\b(LDG\.E(?:\.\w+)?)\b", sass))  # by width: scalar rows would show here
    lines.append("global loads: " + ", ".join(f"{op} {n}" for op, n in sorted(loads.items())))
    loops = []
    for i, (address, text) in enumerate(code):
        target = re.search(r"BRA\s.*?(0x[0-9a-f]+)", text)
        if target and int(target.group(1), 16) < address and int(target.group(1), 16) in index:
            body = code[index[int(target.group(1), 16)]:i + 1]
            ops = Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0] for _, t in body)
            loops.append((len(body), body[0][0], address, ops))
    for size, start, end, ops in sorted(loops, key=lambda loop: -loop[0]):
        local = ops["LDL"] + ops["STL"]
        lines.append(f"loop {start:#x}-{end:#x}: {size} instructions, {local} local loads / stores; "
                     + ", ".join(f"{op} {n}" for op, n in ops.most_common(top)))
    if count and loops:
        largest = max(loops, key=lambda loop: loop[0])[3]
        lines.append("largest loop: " + ", ".join(f"{op} {largest[op]}" for op in count))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", choices=("fwd", "bwd"), default="bwd")
    parser.add_argument("--split", type=int, default=2, help="lanes per channel (SPLIT)")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="PREFETCH (default: the backward 5, the forward 0)")
    parser.add_argument("--unroll", type=int, default=1, help="UNROLL of the backward's state loop")
    parser.add_argument("--block", type=int, default=16, help="steps per block (E)")
    parser.add_argument("--bc", choices=("bf16", "fp32"), default="bf16", help="the B / C rows' dtype")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                        help="the inputs' dtype (fp32: B / C as well)")
    parser.add_argument("--table", choices=("none", "cl", "cl-scaled", "cm"), default="none",
                        help="through an index table, maps channels-last (cl) or channel-major (cm)")
    parser.add_argument("--count", default="", help="opcodes to count in the largest loop (e.g. I2F,BAR)")
    parser.add_argument("--shares", action="store_true", help="SHARES (triton_scan.lane_shares)")
    parser.add_argument("--pairs", action="store_true", help="the forward's PAIRS (triton_scan.lane_pairs)")
    parser.add_argument("--nmajor", action="store_true", help="B / C N-major (the forward's NMAJOR)")
    parser.add_argument("--maxnreg", type=int, default=0,
                        help="registers per thread (a config's MAXNREG field; 0: the compiler's choice)")
    args = parser.parse_args()
    prefetch = args.prefetch if args.prefetch is not None else (5 if args.kernel == "bwd" else 0)
    compiled = compile_lane(args.kernel, args.split, prefetch, args.unroll, args.bc, args.block, args.maxnreg,
                            args.table, args.dtype, args.shares, args.pairs, args.nmajor)
    bc = "fp32" if args.dtype == "fp32" else args.bc
    print(f"lane {args.kernel}, {args.dtype}, split {args.split}, PREFETCH {prefetch}, UNROLL {args.unroll}, "
          f"E {args.block}, B / C {bc}, MAXNREG {args.maxnreg or 'auto'}, table {args.table}"
          f"{', SHARES' if args.shares else ''}{', PAIRS' if args.pairs else ''}"
          f"{', N-major B / C' if args.nmajor else ''}")
    for line in sass_report(compiled.asm["cubin"], count=tuple(op for op in args.count.split(",") if op)):
        print(" ", line)


if __name__ == "__main__":
    main()
