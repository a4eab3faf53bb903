"""What one warp's global load costs the L1's data pipe, by access pattern: one-warp programs that each load
the same pattern over and over (the address moving on each iteration), for Nsight Compute's counters
(l1tex__data_pipe_lsu_wavefronts against l1tex__t_requests_pipe_lsu_mem_global_op_ld). The patterns are
the lane scan forward's (kernels/NOTES.md v1.37): B / C rows L-major at 4 lanes a channel (4 state groups,
each 16 bytes broadcast to 8 lanes, in 4 lines), the same N-major (one 64-byte run), and the extremes.

    ncu --metrics l1tex__data_pipe_lsu_wavefronts.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum \\
        python benchmarks/l1_wavefronts.py   # on the GPU machine; prints the load widths (PTX)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ITERS = 256
PROGRAMS = 264  # two a SM on an H200


@triton.jit
def _loads(x_ptr, out_ptr, ROW: tl.constexpr, STEP: tl.constexpr, LANE: tl.constexpr, GROUP: tl.constexpr,
           VEC: tl.constexpr, ITERS: tl.constexpr):
    """Lane r loads VEC consecutive fp32 at it * STEP + (r // GROUP) * ROW + (r % GROUP) * LANE on iteration
    it: GROUP lanes a piece (GROUP 32, LANE 0: one piece broadcast to the warp)."""
    r = tl.arange(0, 32)
    off = (r // GROUP) * ROW + (r % GROUP) * LANE
    j = tl.arange(0, VEC)
    acc = tl.zeros([32, VEC], tl.float32)
    base = x_ptr + tl.program_id(0) * 64
    for it in range(ITERS):
        ptrs = base + it * STEP + tl.multiple_of(off, VEC)[:, None] + j[None, :]
        acc += tl.load(ptrs)
    tl.store(out_ptr + tl.program_id(0) * 32 * VEC + r[:, None] * VEC + j[None, :], acc)


# name: (ROW, STEP, LANE, GROUP, VEC), in fp32 elements
PATTERNS = {
    "rows_L_major_4_groups": (4096, 4, 0, 8, 4),  # 4 pieces of 16 B in 4 lines, 8 lanes each
    "rows_N_major_4_groups": (4, 16, 0, 8, 4),  # 4 pieces of 16 B in one 64-byte run, 8 lanes each
    "one_piece_128": (0, 4, 0, 32, 4),  # the whole warp one 16-byte piece
    "dense_128": (0, 128, 4, 32, 4),  # 32 pieces of 16 B, 512 contiguous bytes
    "one_word_32": (0, 1, 0, 32, 1),  # the whole warp one word
    "dense_32": (0, 32, 1, 32, 1),  # 32 words, one line
    "channel_rows_64": (4096, 8, 2, 4, 2),  # 8 lines of 32 B (8 channels' rows, 4 lanes of 8 B each)
}


def main() -> None:
    x = torch.randn(2**24, device="cuda")
    out = torch.empty(PROGRAMS * 32 * 4, device="cuda")
    for name, (row, step, lane, group, vec) in PATTERNS.items():
        kernel = _loads[(PROGRAMS,)](x, out, ROW=row, STEP=step, LANE=lane, GROUP=group, VEC=vec, ITERS=ITERS,
                                     num_warps=1)
        widths = {w: kernel.asm["ptx"].count(w) for w in ("ld.global.v4", "ld.global.v2", "ld.global.b32")}
        print(f"{name}: ROW {row} STEP {step} LANE {lane} GROUP {group} VEC {vec}, loads in PTX {widths}; "
              f"requests expected {PROGRAMS * ITERS}", flush=True)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
