"""Model throughput: training and inference images/s of MambaAD for a preset, on CPU or GPU.

    python benchmarks/model_throughput.py --preset mvtec --batch-size 16 --device cuda
    python benchmarks/model_throughput.py --preset demo --device cpu --steps 3
    python benchmarks/model_throughput.py --variants fp32,bf16+cl --json out.json --profile bf16+cl
    torchrun --standalone --nproc-per-node 2 benchmarks/model_throughput.py --variants bf16+cl+graphs

Under torchrun each process runs train's data-parallel step on its own GPU (NCCL; gloo on CPU) with
--batch-size images, and rank 0 prints the images/s of all of them together.

Weights are random (encoder weights "none"): throughput does not depend on them. The scan backend
is the config's (auto: triton on GPU, else mamba_ssm's CUDA kernel when importable, else torch); --backend
overrides it for every variant that does not set its own. Variants run one after the other in one process,
so their ratios are side by side. --profile prints the GPU kernels that take the time in one variant's
training step (torch.profiler). The measurement itself is mambaad_cli.engine.bench.model_throughput (also
behind `mambaad bench --model`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any
from unittest import mock

import torch

from kernels.triton_scan import _LANE_BWD_CONFIGS, _LANE_FWD_CONFIGS
from mambaad_cli.engine.bench import model_throughput, switches
from mambaad_cli.engine.distributed import DistContext, distributed_session, launched_by_torchrun

BF16_CL = {"train.precision": "bf16", "train.channels_last": True}
# v1.24's lane backward config space (kernels/triton_scan.py _LANE_BWD_CONFIGS, MAMBAAD_SCAN_*_CONFIGS syntax)
LANE_BWD_V124 = "32:1:3:1:16:0,32:1:3:1:16:1,32:1:3:1:8:1"


def _space(configs) -> str:
    return ",".join(":".join(map(str, c)) for c in configs)


# this tree's lane config spaces with 168-register configs beside them (a config's MAXNREG field: 12 one-warp
# programs per SM instead of 8, for spills; the autotuner picks per shape)
LANE_REG168 = {
    "MAMBAAD_SCAN_LANE_CONFIGS": _space(_LANE_FWD_CONFIGS) + ",32:1:3:1:16:0:168,32:1:3:1:16:2:168",
    "MAMBAAD_SCAN_LANE_BWD_CONFIGS": _space(_LANE_BWD_CONFIGS) + ",32:1:3:1:16:5:168"}
# both lane kernels at every shape: at MambaAD's 256 x 256 shapes that moved only the 8 x 8 maps (64 steps)
# off the segment kernels until v1.26 made that the default for 16-bit inputs (triton_scan.LANE_MIN_STEPS).
# V125: v1.25's routing, the lane kernels from 128 steps only (its INFER_CKPT=1, scoring forwards storing
# checkpoints, is the default again: session 28's call 3 ran v1.26 with 0, hence it here); fp32+v125 adds
# fp32's one lane per channel and tiles backward; noinferckpt: scoring forwards without checkpoints
# (triton_scan._inference, opt-in)
LANES = {"MAMBAAD_SCAN_LANE": "1", "MAMBAAD_SCAN_LANE_BWD": "1"}
V125 = {"MAMBAAD_SCAN_LANE_MIN_STEPS": "128", "MAMBAAD_SCAN_INFER_CKPT": "1"}
NO_INFER_CKPT = {"MAMBAAD_SCAN_INFER_CKPT": "0"}
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},  # the paper's recipe, eager
    "bf16+cl": BF16_CL,
    "bf16+cl+fused": {**BF16_CL, "model.decoder.scan_backend": "triton-fused"},
    "bf16+cl+compile": {**BF16_CL, "train.compile": True},
    "bf16+cl+fused+compile": {**BF16_CL, "model.decoder.scan_backend": "triton-fused", "train.compile": True},
    "fp32+fused": {"model.decoder.scan_backend": "triton-fused"},
    "fp32+compile": {"train.compile": True},
    "tf32": {"train.precision": "tf32"},  # fp32 tensors, TF32 matrix products
    "tf32+cl": {"train.precision": "tf32", "train.channels_last": True},
    # the directions' glue in PyTorch instead of Triton (kernels/direction_glue.py), to time the kernels
    "fp32+torchglue": {"env": {"MAMBAAD_GLUE": "torch"}},
    # each step replayed as one CUDA graph (engine/graphs.py)
    "fp32+graphs": {"train.cuda_graphs": True},
    "tf32+graphs": {"train.precision": "tf32", "train.cuda_graphs": True},
    "bf16+cl+graphs": {**BF16_CL, "train.cuda_graphs": True},
    # the fused SS2D core (index tables; on the lane kernels since v1.28) instead of the glue + scan
    "bf16+cl+graphs+fused": {**BF16_CL, "train.cuda_graphs": True,
                             "model.decoder.scan_backend": "triton-fused"},
    # the same with the positions scaled by the host (opt-in: kernels/triton_scan._table_positions)
    "bf16+cl+graphs+fused+scaled": {**BF16_CL, "train.cuda_graphs": True,
                                    "model.decoder.scan_backend": "triton-fused",
                                    "env": {"MAMBAAD_SCAN_TABLE_SCALE": "1"}},
    # the fused core at some stages only, by map side (MAMBAAD_SS2D_FUSED_SIDES; `fusedat8+16`: the 8 x 8 and
    # 16 x 16 maps), the default order elsewhere; `fusedatnone`: nowhere (v1.30's default; since v1.31 the
    # default takes it by map size, hss.FUSED_MAX_TOKENS)
    **{f"{base}+fusedat{'+'.join(sides)}": {
        **config, "env": {"MAMBAAD_SS2D_FUSED_SIDES": ",".join(sides)}}
       for base, config in (("bf16+cl+graphs", {**BF16_CL, "train.cuda_graphs": True}), ("fp32", {}))
       for sides in (("none",), ("8",), ("16",), ("32",), ("64",), ("8", "16"), ("8", "16", "32"),
                     ("16", "32"), ("32", "64"), ("16", "32", "64"), ("8", "16", "32", "64"))},
    # the fused core at every map with x_proj as three products (MAMBAAD_X_PROJ_TOKENS=split, opt-in, untimed
    # in v1.32: its one product's backward cat took 0.128 ms a step at 64 x 64), and at the default's maps
    "bf16+cl+graphs+fusedat8+16+32+64+xprojsplit": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SS2D_FUSED_SIDES": "8,16,32,64", "MAMBAAD_X_PROJ_TOKENS": "split"}},
    "bf16+cl+graphs+xprojsplit": {**BF16_CL, "train.cuda_graphs": True,
                                  "env": {"MAMBAAD_X_PROJ_TOKENS": "split"}},
    # the fused core at every map, x_proj as three products at 64 x 64 only, where the SS2D module timed 2.0 %
    # faster with them (v1.33; 3-10 % slower at the smaller maps)
    "bf16+cl+graphs+fusedat8+16+32+64+xprojsplitat64": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SS2D_FUSED_SIDES": "8,16,32,64", "MAMBAAD_X_PROJ_TOKENS": "64"}},
    # PyTorch's LayerNorm (fp32 under autocast) instead of kernels/layer_norm.py's, to time the kernels
    "bf16+cl+torchln": {**BF16_CL, "env": {"MAMBAAD_LN_BACKEND": "torch"}},
    "bf16+cl+graphs+torchln": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_LN_BACKEND": "torch"}},
    # the scan forward always on the lane kernel (kernels/triton_lane.py), on it by shape (MAMBAAD_SCAN_LANE=
    # auto), or on the faster of the two timed per shape (time), instead of always on the segment one
    "bf16+cl+graphs+lane": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_LANE": "1"}},
    # the segment forward always (v1.11's default; auto, the default since v1.12, runs in the others)
    "bf16+cl+graphs+seg": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_LANE": "0"}},
    "bf16+cl+graphs+laneauto": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_LANE": "auto"}},
    "bf16+cl+graphs+lanetime": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_LANE": "time"}},
    "fp32+laneauto": {"env": {"MAMBAAD_SCAN_LANE": "auto"}},
    # v1.33's lane forward for 16-bit inputs (2 lanes a channel, no step shares) instead of v1.34's 4 lanes
    # with step shares (triton_scan.lane_split, lane_shares)
    "bf16+cl+graphs+v133fwd": {**BF16_CL, "train.cuda_graphs": True,
                               "env": {"MAMBAAD_SCAN_LANE_SPLIT": "2", "MAMBAAD_SCAN_LANE_SHARES": "0"}},
    # the same lane forward for fp32 inputs (2 lanes a channel, no step shares; v1.33 took 4 with shares only
    # through a table at one short wave, so this is v1.33's everywhere else)
    "fp32+graphs+v133fwd": {"train.cuda_graphs": True,
                            "env": {"MAMBAAD_SCAN_LANE_SPLIT": "2", "MAMBAAD_SCAN_LANE_SHARES": "0"}},
    # two channel sets a lane in the lane forward (v1.35, opt-in until v1.37: triton_scan.lane_pairs)
    "bf16+cl+graphs+pairs": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_LANE_PAIRS": "1"}},
    # v1.37's lane forward: no pairs (auto by the grid since v1.38), and fp32's lane kernels from 128 steps
    # (64 since v1.38, triton_scan.LANE_MIN_STEPS; the knob sets both dtypes, and bf16's was 64 already)
    "bf16+cl+graphs+v137": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_LANE_PAIRS": "0"}},
    "fp32+graphs+v137": {"train.cuda_graphs": True,
                         "env": {"MAMBAAD_SCAN_LANE_PAIRS": "0", "MAMBAAD_SCAN_LANE_MIN_STEPS": "128"}},
    # the lane backward without step shares (v1.34's default; on by default since v1.35 where a channel's
    # states are split over lanes: 1024 x 4096 at batch 16, the 64 x 64 maps' unfused scan)
    "bf16+cl+graphs+nobwdshares": {**BF16_CL, "train.cuda_graphs": True,
                                   "env": {"MAMBAAD_SCAN_LANE_BWD_SHARES": "0"}},
    # and the backward on the lane kernel too (MAMBAAD_SCAN_LANE_BWD): always, reading the forward's state
    # every 16 steps (MAMBAAD_SCAN_LANE_CKPT, whose default is 16: lanebwd16 names it as v1.12's results do),
    # or every chunk (lanebwd128: a pass over each chunk first), with B / C cast to fp32 once per call
    # (MAMBAAD_SCAN_BC_FP32=1: its broadcast loads then need no conversion per state), or by shape
    "bf16+cl+graphs+laneauto+lanebwd": {**BF16_CL, "train.cuda_graphs": True,
                                        "env": {"MAMBAAD_SCAN_LANE": "auto", "MAMBAAD_SCAN_LANE_BWD": "1"}},
    "bf16+cl+graphs+laneauto+lanebwd16": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SCAN_LANE": "auto", "MAMBAAD_SCAN_LANE_BWD": "1", "MAMBAAD_SCAN_LANE_CKPT": "16"}},
    "bf16+cl+graphs+laneauto+lanebwd128": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SCAN_LANE": "auto", "MAMBAAD_SCAN_LANE_BWD": "1", "MAMBAAD_SCAN_LANE_CKPT": "0"}},
    "bf16+cl+graphs+laneauto+lanebwd16+bc32": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SCAN_LANE": "auto", "MAMBAAD_SCAN_LANE_BWD": "1", "MAMBAAD_SCAN_LANE_CKPT": "16",
                "MAMBAAD_SCAN_BC_FP32": "1"}},
    "bf16+cl+graphs+laneauto+lanebwdauto": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SCAN_LANE": "auto", "MAMBAAD_SCAN_LANE_BWD": "auto"}},
    # auto is the default since v1.13; lanebwd0 is v1.12's default (the segment backward everywhere), and
    # fp32+lanebwd the lane backward forced in fp32, which auto leaves out
    "bf16+cl+graphs+laneauto+lanebwd0": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SCAN_LANE": "auto", "MAMBAAD_SCAN_LANE_BWD": "0"}},
    "fp32+lanebwd": {"env": {"MAMBAAD_SCAN_LANE_BWD": "1"}},
    "fp32+graphs+lanebwd": {"train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_LANE_BWD": "1"}},
    # the anomaly map's cosine distances in one Triton kernel on the 16-bit maps (kernels/cosine_distance.py;
    # the default for 16-bit maps since v1.13, forced here) or as v1.12 did, fp32 copies and
    # F.cosine_similarity (costorch)
    "bf16+cl+graphs+cos": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_COSINE_BACKEND": "triton"}},
    "bf16+cl+graphs+costorch": {**BF16_CL, "train.cuda_graphs": True,
                                "env": {"MAMBAAD_COSINE_BACKEND": "torch"}},
    # v1.14's default with v1.13's softplus for 16-bit deltas (MAMBAAD_SCAN_SOFTPLUS=exact: libdevice's log
    # and a division per element instead of _softplus_fast)
    "bf16+cl+graphs+spexact": {**BF16_CL, "train.cuda_graphs": True,
                               "env": {"MAMBAAD_SCAN_SOFTPLUS": "exact"}},
    # cuDNN's heuristic convolution algorithms instead of timed ones: every variant above times them as
    # `train` does (torch.backends.cudnn.benchmark unless train.deterministic); v1.14 and earlier measured
    # with PyTorch's default, the heuristics
    "bf16+cl+graphs+nobench": {**BF16_CL, "train.cuda_graphs": True, "cudnn_benchmark": False},
    "fp32+nobench": {"cudnn_benchmark": False},
    # torch.compile'd fusion and decoder (a graph break at each scan), inside the step's CUDA graph
    "bf16+cl+graphs+compile": {**BF16_CL, "train.cuda_graphs": True, "train.compile": True},
    # the frozen encoder without its folded 16-bit copy (MAMBAAD_ENCODER_FOLD=0: model/encoder_fold.py), and
    # with its bf16 copy in training and scoring (opt-in since v1.15: its features are further from float32's)
    "bf16+cl+graphs+laneauto+nofold": {**BF16_CL, "train.cuda_graphs": True,
                                       "env": {"MAMBAAD_SCAN_LANE": "auto", "MAMBAAD_ENCODER_FOLD": "0"}},
    "bf16+cl+graphs+fold": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_ENCODER_FOLD": "1"}},
    # the folded copy in float16 in training too (scoring runs it by default since v1.16), and not at all
    "bf16+cl+graphs+fold16": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_ENCODER_FOLD": "fp16"}},
    "bf16+cl+graphs+nofold": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_ENCODER_FOLD": "0"}},
    # the graphed scorer with bf16 copies of the fusion's and decoder's autocast weights (the default since
    # v1.16, engine/scoring_weights.py: 189 fewer cast kernels per inference step, the same maps), and without
    "bf16+cl+graphs+castw": {**BF16_CL, "train.cuda_graphs": True,
                             "env": {"MAMBAAD_SCORE_CAST_WEIGHTS": "1"}},
    "bf16+cl+graphs+nocastw": {**BF16_CL, "train.cuda_graphs": True,
                               "env": {"MAMBAAD_SCORE_CAST_WEIGHTS": "0"}},
    # the captured step on one stream: the LSS modules' local branches not beside their HSS chain
    # (model/branch_streams.py, the default since v1.18)
    "bf16+cl+graphs+nobranch": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_BRANCH_STREAMS": "0"}},
    # the graphed training step with bf16 copies of the weights autocast casts (engine/training_weights.py;
    # opt-in in v1.18, the default since v1.19), and without
    "bf16+cl+graphs+trainw": {**BF16_CL, "train.cuda_graphs": True,
                              "env": {"MAMBAAD_TRAIN_CAST_WEIGHTS": "1"}},
    "bf16+cl+graphs+notrainw": {**BF16_CL, "train.cuda_graphs": True,
                                "env": {"MAMBAAD_TRAIN_CAST_WEIGHTS": "0"}},
    # instance norm + SiLU with shorter chunks on launches under 512 or 1024 programs (instance_norm.py
    # MIN_PROGRAMS; v1.19's default keeps 256 rows)
    "bf16+cl+graphs+norm512": {**BF16_CL, "train.cuda_graphs": True,
                               "env": {"MAMBAAD_NORM_MIN_PROGRAMS": "512"}},
    "bf16+cl+graphs+norm1024": {**BF16_CL, "train.cuda_graphs": True,
                                "env": {"MAMBAAD_NORM_MIN_PROGRAMS": "1024"}},
    # without v1.20's defaults: the SS2D depthwise conv's own bias add and SiLU instead of one Triton pass
    # (kernels/bias_silu.py), contiguous B / C copies instead of views for the scan (hss.py), neither (v1.19)
    "bf16+cl+graphs+nobiassilu": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_BIAS_SILU": "0"}},
    "bf16+cl+graphs+nobcviews": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_SCAN_BC_VIEWS": "0"}},
    "bf16+cl+graphs+v119": {**BF16_CL, "train.cuda_graphs": True,
                            "env": {"MAMBAAD_BIAS_SILU": "0", "MAMBAAD_SCAN_BC_VIEWS": "0",
                                    "MAMBAAD_NORM_CONV_BIAS": "add", "MAMBAAD_CONV1X1_GEMM": "0",
                                    "MAMBAAD_DT_PROJ": "matmul", "MAMBAAD_LN_EXPAND": "torch",
                                    "MAMBAAD_IN_PROJ": "chunk"}},
    # the LSS local branches' 1x1 convs without the bias that their instance norm cancels (conv_bias.py):
    # in training too, and never (v1.20's default: in scoring only)
    "bf16+cl+graphs+normbias": {**BF16_CL, "train.cuda_graphs": True,
                                "env": {"MAMBAAD_NORM_CONV_BIAS": "skip"}},
    "bf16+cl+graphs+nonormbias": {**BF16_CL, "train.cuda_graphs": True,
                                  "env": {"MAMBAAD_NORM_CONV_BIAS": "add"}},
    # biased 1x1 convs of channels-last maps by cuDNN's conv and a bias add, not one GEMM with the bias in its
    # epilogue (model/conv_bias.py, the default since v1.21): v1.20's defaults
    "bf16+cl+graphs+nogemm1x1": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_CONV1X1_GEMM": "0"}},
    # SS2D's dt_proj at rank 4 without the padding to rank 8 (hss.py _dt_proj, the default since v1.21)
    "bf16+cl+graphs+nodtpad": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_DT_PROJ": "matmul"}},
    # neither of v1.21's two defaults (nor v1.22's): v1.20's
    "bf16+cl+graphs+v120": {**BF16_CL, "train.cuda_graphs": True,
                            "env": {"MAMBAAD_CONV1X1_GEMM": "0", "MAMBAAD_DT_PROJ": "matmul",
                                    "MAMBAAD_LN_EXPAND": "torch", "MAMBAAD_IN_PROJ": "chunk"}},
    # PatchExpand2D's LayerNorm by nn.LayerNorm, not the Triton kernels with an fp32 result (decoder.py, the
    # default since v1.22); v1.21's defaults (nor the in_proj halves in scoring, below)
    "bf16+cl+graphs+nolnexpand": {**BF16_CL, "train.cuda_graphs": True,
                                  "env": {"MAMBAAD_LN_EXPAND": "torch"}},
    "bf16+cl+graphs+v121": {**BF16_CL, "train.cuda_graphs": True,
                            "env": {"MAMBAAD_LN_EXPAND": "torch", "MAMBAAD_IN_PROJ": "chunk"}},
    # SS2D's in_proj as two dense halves from one batched GEMM (hss.py _in_proj_halves: no copy of the
    # depthwise conv's input) in training too, and never (the default since v1.22: in scoring only)
    "bf16+cl+graphs+inhalves": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_IN_PROJ": "halves"}},
    "bf16+cl+graphs+inchunk": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_IN_PROJ": "chunk"}},
    # v1.23's defaults without one of their changes: the bias-free 1x1 convs (LSS branches, scoring) left
    # to cuDNN (gemmbiased); PatchExpand2D's pixel shuffle copied before its LayerNorm kernels (lncopy); the
    # stem's max pool in PyTorch (torchpool); and v1.22's defaults (v122: none of them, nor the cosine
    # kernel, whose auto v1.22 never took for the model's maps)
    "bf16+cl+graphs+gemmbiased": {**BF16_CL, "train.cuda_graphs": True,
                                  "env": {"MAMBAAD_CONV1X1_GEMM": "biased"}},
    "bf16+cl+graphs+lncopy": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_LN_EXPAND": "kernels"}},
    "bf16+cl+graphs+torchpool": {**BF16_CL, "train.cuda_graphs": True, "env": {"MAMBAAD_MAX_POOL": "torch"}},
    "bf16+cl+graphs+v122": {**BF16_CL, "train.cuda_graphs": True,
                            "env": {"MAMBAAD_MAX_POOL": "torch", "MAMBAAD_COSINE_BACKEND": "torch",
                                    "MAMBAAD_CONV1X1_GEMM": "biased", "MAMBAAD_LN_EXPAND": "kernels"}},
    # the lane kernels with each channel's states over several lanes (kernels/triton_lane.py, SPLIT; auto by
    # default since v1.24: the forward in 2, the backward where one lane per channel gives too few warps):
    # v123 turns the split off (one lane per channel, v1.23's kernels), 2 / 4 split every lane kernel's
    # channels, lanesplitbwd is v1.23's forward with v1.24's backward
    "bf16+cl+graphs+v123": {**BF16_CL, "train.cuda_graphs": True,
                            "env": {"MAMBAAD_SCAN_LANE_SPLIT": "1", "MAMBAAD_SCAN_LANE_BWD_SPLIT": "1"}},
    **{f"bf16+cl+graphs+lanesplit{n}": {
        **BF16_CL, "train.cuda_graphs": True,
        "env": {"MAMBAAD_SCAN_LANE_SPLIT": n, "MAMBAAD_SCAN_LANE_BWD_SPLIT": n}} for n in ("2", "4")},
    "bf16+cl+graphs+lanesplitbwd": {**BF16_CL, "train.cuda_graphs": True,
                                    "env": {"MAMBAAD_SCAN_LANE_SPLIT": "1"}},
    # the lane backward's config space (MAMBAAD_SCAN_LANE_BWD_CONFIGS; _reset_scan_tuners): v1.24's
    # (PREFETCH 1 where v1.25 has 4); two states per loop iteration (UNROLL 2), alone or beside v1.24's
    # configs (session 27: slower, not in the space); each state's A, start state and adjoint loaded an
    # iteration ahead with its rows (PREFETCH 4), alone or beside them; v126: v1.26's space (PREFETCH 4 where
    # v1.27 has 5, the rows carried in their own dtype)
    **{f"bf16+cl+graphs+{name}": {**BF16_CL, "train.cuda_graphs": True, "env": env} for name, env in (
        *((name, {"MAMBAAD_SCAN_LANE_BWD_CONFIGS": space}) for name, space in (
            ("v124", LANE_BWD_V124), ("bwdunroll2", f"{LANE_BWD_V124},32:1:3:2:16:1"),
            ("bwdunroll2only", "32:1:3:2:16:1"), ("bwdpf4", f"{LANE_BWD_V124},32:1:3:1:16:4,32:1:3:1:8:4"),
            ("bwdpf4only", "32:1:3:1:16:4"), ("v126", _space(_LANE_BWD_CONFIGS).replace("16:5", "16:4")))),
        ("reg168", LANE_REG168), ("lanes", LANES), ("v125", V125), ("noinferckpt", NO_INFER_CKPT))},
    "fp32+v125": {"env": {**V125, "MAMBAAD_SCAN_LANE_SPLIT": "1", "MAMBAAD_SCAN_LANE_BWD": "0"}},
    # v1.28's lane forward space: no config asks for the next block's u and delta ahead (PREFETCH 4 / 6)
    "bf16+cl+graphs+v128fwd": {**BF16_CL, "train.cuda_graphs": True, "env": {
        "MAMBAAD_SCAN_LANE_CONFIGS": "32:1:3:1:16:0,32:1:3:1:16:2,32:1:3:1:8:0"}},
    # conv bias gradients by PyTorch's reduction instead of v1.19's product with ones (model/conv_bias.py)
    "bf16+cl+graphs+biassum": {**BF16_CL, "train.cuda_graphs": True,
                               "env": {"MAMBAAD_CONV_BIAS_GRAD": "sum"}},
}


def _reset_scan_tuners() -> None:
    # the autotuners (kernels/triton_scan.py) are built once per process from the MAMBAAD_SCAN_*_CONFIGS
    # spaces; a variant that sets one gets new tuners (compiled kernels stay in Triton's cache)
    scan = sys.modules.get("kernels.triton_scan")
    if scan is not None:
        scan._tuned_kernels.cache_clear()


def split_variant(variant: str) -> tuple[dict[str, Any], dict[str, str], bool | None]:
    """(config overrides, environment, cuDNN benchmark setting or None for train's) of a variant."""
    overrides = dict(VARIANTS[variant])
    return overrides, overrides.pop("env", {}), overrides.pop("cudnn_benchmark", None)


def profile_step(args: argparse.Namespace, batch: int, variant: str, phase: str) -> str:
    """Top GPU kernels of a few training or inference steps, by self CUDA time: torch.profiler's table."""
    from torch.profiler import ProfilerActivity, profile

    overrides, env, benchmark = split_variant(variant)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with mock.patch.dict(os.environ, env):
        # a step first, outside the profile: cuDNN's benchmark mode tries every convolution algorithm on a
        # shape's first call, thousands of kernels that filled the table (session 32); its picks stay cached
        model_throughput(args.preset, batch, args.device, args.backend, args.image_size, 1, 1, overrides,
                         phases=(phase,), cudnn_benchmark=benchmark)
        with profile(activities=activities) as prof:
            model_throughput(args.preset, batch, args.device, args.backend, args.image_size, 3, 2, overrides,
                             phases=(phase,), cudnn_benchmark=benchmark)
    if args.trace:  # the timeline, for where the GPU idles (chrome://tracing or benchmarks/trace_gaps.py)
        prof.export_chrome_trace(args.trace.replace("{phase}", phase))
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90)
    return f"profile of {variant}, batch {batch}, {phase} (3 steps after 2 warm-up)\n{table}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mvtec")
    parser.add_argument("--batch-size", default="16", help="comma-separated batch sizes")
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--variants", default="fp32", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--phases", default="train,infer",
                        help="train, infer or train,infer (inference alone: not right after training)")
    parser.add_argument("--json", help="write every row here")
    parser.add_argument("--profile", default="", help="a variant whose steps to profile")
    parser.add_argument("--profile-phases", default="train", help="train, infer or train,infer")
    parser.add_argument("--trace", default="", help="with --profile: write its chrome trace here "
                        "({phase} in the path is replaced by train or infer)")
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names + ([args.profile] if args.profile else []) if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.profile and launched_by_torchrun():
        parser.error("--profile: one process only (run without torchrun)")
    with distributed_session(args.device) as (ctx, device):
        run(parser, args, ctx, device)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, ctx: DistContext,
        device: torch.device) -> None:
    """Every variant at every batch size on this process's device; rank 0 prints and writes."""
    say = print if ctx.is_main else (lambda *a, **k: None)
    names = [v for v in args.variants.split(",") if v]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    say(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
        f"processes {ctx.world_size}", flush=True)
    batches = [int(b) for b in args.batch_size.split(",")]
    phases = tuple(p for p in args.phases.split(",") if p)
    if not phases or set(phases) - {"train", "infer"}:
        parser.error(f"--phases: train, infer or train,infer, got {args.phases!r}")
    rows = []
    for batch in batches:
        for variant in names:
            backend = VARIANTS[variant].get("model.decoder.scan_backend", args.backend)
            row: dict[str, Any] = {"device": name, "processes": ctx.world_size, "preset": args.preset,
                                   "batch": batch, "variant": variant, "backend": backend}
            overrides, env, benchmark = split_variant(variant)
            fresh_space = any(k.endswith("_CONFIGS") for k in env)
            try:
                with mock.patch.dict(os.environ, env):  # the variant's knobs, restored after
                    if fresh_space:  # the scan's config spaces are read once per process: read them again
                        _reset_scan_tuners()
                    row["switches"] = switches()  # every MAMBAAD_* set, the variant's and the caller's
                    row.update(model_throughput(args.preset, batch, device, args.backend,
                                                args.image_size, args.steps, args.warmup, overrides,
                                                phases=phases, cudnn_benchmark=benchmark))
            except Exception as e:  # noqa: BLE001 - one failing variant (OOM, compile) must not stop the rest
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if fresh_space:  # and back to the caller's spaces for the next variant
                _reset_scan_tuners()
            scan = sys.modules.get("kernels.triton_scan")
            if scan is not None and getattr(scan, "_LANE_PICKS", None):  # the scan forward's kernel per shape
                row["scan_forward"] = {str(k[0]) + (" train" if k[1] else " infer"): "lane" if v else "seg"
                                       for k, v in scan._LANE_PICKS.items()}
                scan._LANE_PICKS.clear()
            rows.append(row)
            say(json.dumps(row), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json and ctx.is_main:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.profile and ctx.is_main:
        for phase in args.profile_phases.split(","):
            print(profile_step(args, batches[0], args.profile, phase), flush=True)


if __name__ == "__main__":
    main()
