"""The frozen encoder's fast path under 16-bit autocast: a BatchNorm-folded, pre-cast copy of the backbone.

Under torch.autocast the backbone's parameters, which do not require grad, miss autocast's weight cache:
every forward casts every conv weight to 16 bits again (one small kernel per weight), and every BatchNorm
runs as a kernel of its own over the activations. The copy built here has each BatchNorm folded into the
conv before it (in float32), then everything stored in the autocast dtype once; FrozenEncoder runs it with
autocast off on its input cast to that dtype, which gives 16-bit features as autocast did.

The copy is no submodule (not in the state dict, not in .parameters(), not moved by .to()): FoldCache keeps
it in a plain attribute, keyed on the device, the dtype and the backbone's tensors (their storage and
version counter), so load_state_dict, an in-place edit or .to() rebuilds it at the next autocast forward.
MAMBAAD_ENCODER_FOLD (read at every forward, for A/B runs in one process; fold_mode): unset or auto, the
default since v1.16, runs the float16 copy (below) when the encoder is in eval mode on a GPU, that is when
scoring under bf16 autocast, and autocast's own path in training and on CPUs; 0 autocast's path always. Set
to one of these, the copy runs in training too: 1 with the epilogue fusion below, bn the folding alone, fp16
the same copy stored and run in float16 whatever the autocast dtype, its features cast to that dtype at the
end.

Why scoring only (since v1.16): with the float16 copy the whole model's bf16 anomaly maps sit 2-2.8x nearer
float32's than with autocast's path (benchmarks/encoder_fold_error.py --maps, real-dev's tire and
KolektorSDD images, random decoder weights), and bf16 inference on the H200 ran 3.5 % faster at batch 64,
4.1 % at batch 16 (session 18). Training against the copy's features instead lowered tire's P-AP (below),
so training keeps autocast's path.

Why the bf16 copy is opt-in: the copy's 16-bit weights are the folded ones (w times gamma / sigma, rounded
once), and on some images its features sit further from the float32 backbone's than autocast's do
(benchmarks/encoder_fold_error.py, bundled EfficientNet-Lite0, CPU, bf16). On real-dev's tire images, 1 - cos
against float32 is 1.1-1.2e-2 at the two deeper scales against 0.5-0.7e-2, and rounding the folded weights
alone, in float32 arithmetic, costs 3-5x what rounding the unfolded ones does; on KolektorSDD's the two are
level. On the H200 (real-dev, 80 epochs, bf16 + graphs) tire's pixel metrics came out lower with the copy
in all five runs than in both runs without it: P-AUROC 97.8-98.2 against 98.4, AUPRO@paper 89.5-91.0 against
91.8-92.7, P-AP 42.6-45.1 against 46.5-47.2. It gained 0.7 % in training and 2.5 % in inference (batch 64,
v1.12): not worth that as a default.

The fp16 copy: float16 keeps 3 more mantissa bits than bfloat16, and there the folded copy is as close to
float32 as the plain backbone (1 - cos about 1e-4 on tire's images, 50x closer than bf16 autocast's 5e-3), so
it could give the fold's speed with better features than the default. Its range is float16's: a copy whose
weights or probe features are not finite is not used (the autocast path runs). On the H200 (v1.16) it is the
fastest encoder (+1.0 % training, +3.5 % inference at batch 64), but trained with it throughout, tire's P-AP
came out at 42.8-45.4 in three real-dev runs against autocast's 46.3-47.8 in four (P-AUROC and AUPRO@paper
level), so in training it stays opt-in; an fp32-trained run's 44.8 says nearness to float32 is not what that
P-AP is about (README, "Quality on real data").

Folding alone gains little on a GPU: PyTorch's cuDNN conv adds its bias in a kernel of its own, which
costs what the BatchNorm kernel did (ResNet-34, batch 64, H200: the same encoder time). The copy therefore
also runs each folded conv -> [+ residual] -> ReLU as one cuDNN call with bias, residual and ReLU in the
convolution's epilogue (ConvAddReLU).
"""

from __future__ import annotations

import copy
import operator
import os
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

import torch
from timm.layers import BatchNormAct2d, Conv2dSame
from torch import fx, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from kernels.dispatch import autocast_dtype
from kernels.max_pool import MaxPool2dNHWC

FOLD_ENV = "MAMBAAD_ENCODER_FOLD"
FAST_DTYPES = (torch.bfloat16, torch.float16)
MAX_REBUILDS_IN_A_ROW = 3  # the backbone changed before each of that many forwards: stop building copies


# Convolutions a BatchNorm after them folds into: exact types, since a subclass may transform its weight in
# its forward (timm's StdConv2d standardises it), which folding would break. Conv2dSame pads by the input's
# size first, then is a plain conv.
FOLD_CONVS = (nn.Conv2d, Conv2dSame)
RELUS = (F.relu, torch.relu, torch.relu_)
ADDS = (operator.add, operator.iadd, torch.add)


class Folded(NamedTuple):
    module: nn.Module  # eval mode, no grad
    folded: int  # BatchNorm layers folded into their conv
    unfolded: int  # BatchNorm layers (or traced-through batch_norm calls) left as they are
    epilogues: int  # folded conv -> (+ residual) -> ReLU chains run as one ConvAddReLU


class ConvAddReLU(nn.Module):
    """relu(conv(x) + z) (z optional) for a conv with its bias. On CUDA, one cuDNN call that adds the bias and
    the residual and applies the ReLU in the convolution's epilogue (torch.cudnn_convolution_relu and
    torch.cudnn_convolution_add_relu, the ops TorchScript's frozen-graph conv/add/relu fusion calls); at
    batch 64 on an H200 they cost what the bare conv does, where PyTorch's conv adds its bias in a kernel of
    its own and the add and ReLU take one each. Elsewhere, the three ops."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.cudnn_ok = (
            type(conv) is nn.Conv2d
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.bias is not None
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        c = self.conv
        if self.cudnn_ok and x.is_cuda and torch.backends.cudnn.enabled and x.dtype == c.weight.dtype:
            args = (c.bias, c.stride, c.padding, c.dilation, c.groups)
            if z is None:
                return torch.cudnn_convolution_relu(x, c.weight, *args)
            # cuDNN adds z as it is: no broadcasting
            if z.dtype == x.dtype and x.dim() == 4 and z.shape == self._out_shape(x):
                return torch.cudnn_convolution_add_relu(x, c.weight, z, 1.0, *args)
        y = c(x)
        return F.relu(y if z is None else y + z)

    def _out_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        c = self.conv
        dims = zip(x.shape[2:], c.padding, c.dilation, c.kernel_size, c.stride, strict=True)
        spatial = ((size + 2 * pad - dil * (k - 1) - 1) // stride + 1 for size, pad, dil, k, stride in dims)
        return (x.shape[0], c.out_channels, *spatial)


class _ConvNormLeaves(fx.Tracer):
    # convs and BatchNorms stay single call_module nodes: timm's Conv2dSame computes its padding from the
    # input size in Python (fx cannot trace through it) and BatchNormAct2d would be inlined into functions
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        leaves = (*FOLD_CONVS, BatchNormAct2d, MaxPool2dNHWC)  # and the stem's max pool (model/encoder.py)
        return type(m) in leaves or super().is_leaf_module(m, module_qualified_name)


def folded_copy(backbone: nn.Module, epilogues: bool = True) -> Folded:
    """A float32 copy of `backbone` with each Conv -> BatchNorm pair folded into one conv, and (epilogues)
    each folded conv -> [add a residual] -> ReLU chain made one ConvAddReLU.

    torch.nn.utils.fusion.fuse_conv_bn_eval does the folding (the float32 arithmetic), on the pairs an fx
    graph of the copy shows: a conv whose output only a BatchNorm reads, each module called once. This is
    torch.fx.experimental.optimization.fuse's recipe, which itself matches exact nn.BatchNorm2d modules
    only, behind a tracer that cannot get through tf_ EfficientNets' "same" padding: here timm's
    BatchNormAct2d (EfficientNets, MobileNets, RegNets) folds too, leaving its activation. A backbone fx
    cannot trace is copied unfolded."""
    module = copy.deepcopy(backbone).float().eval()
    module.requires_grad_(False)
    try:
        gm = fx.GraphModule(module, _ConvNormLeaves().trace(module))
    except Exception:  # noqa: BLE001 - any trace failure (data-dependent control flow, ...): no folding
        return Folded(module, 0, sum(isinstance(m, _BatchNorm) for m in module.modules()), 0)
    modules = dict(gm.named_modules(remove_duplicate=False))
    for node in list(gm.graph.nodes):  # timm's placeholders (drop_block, aa) would hide conv -> act chains
        if node.op == "call_module" and type(modules[node.target]) is nn.Identity and len(node.args) == 1:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")

    def single_call_conv(node: object) -> bool:
        """A conv module called once whose output one node reads."""
        return (
            isinstance(node, fx.Node)
            and node.op == "call_module"
            and type(modules[node.target]) in FOLD_CONVS
            and calls[node.target] == 1
            and len(node.users) == 1
        )

    folded = unfolded = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in (torch.batch_norm, F.batch_norm):
            unfolded += 1  # a norm module traced through
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        bn, conv = modules[node.target], node.args[0] if len(node.args) == 1 and not node.kwargs else None
        stats = bn.running_mean is not None and bn.running_var is not None
        foldable = type(bn) in (nn.BatchNorm2d, BatchNormAct2d) and stats and calls[node.target] == 1
        if not (foldable and single_call_conv(conv)):
            unfolded += 1
            continue
        gm.set_submodule(conv.target, fuse_conv_bn_eval(modules[conv.target], bn))
        modules[conv.target] = gm.get_submodule(conv.target)
        if type(bn) is nn.BatchNorm2d:
            node.replace_all_uses_with(conv)
            gm.graph.erase_node(node)
        else:  # BatchNormAct2d: its dropout (eval: none) and activation stay, as one module
            rest = bn.act if isinstance(bn.drop, nn.Identity) else nn.Sequential(bn.drop, bn.act)
            gm.set_submodule(node.target, rest)
            modules[node.target] = rest
        folded += 1
    fused = _fuse_epilogues(gm, modules, single_call_conv) if epilogues else 0
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return Folded(gm.eval(), folded, unfolded, fused)


def _fuse_epilogues(gm: fx.GraphModule, modules: dict[str, nn.Module], single_call_conv) -> int:
    """conv -> ReLU and conv -> add(., z) -> ReLU (the nodes in a line, each read once) become one call of a
    ConvAddReLU, placed where the ReLU was (z may be computed after the conv: ResNet's downsample)."""
    count = 0
    for relu in list(gm.graph.nodes):
        is_relu = (relu.op == "call_module" and type(modules.get(relu.target)) is nn.ReLU) or (
            relu.op == "call_function" and relu.target in RELUS and set(relu.kwargs) <= {"inplace"}
        )
        if not is_relu or len(relu.args) != 1:
            continue
        src, z, add = relu.args[0], None, None
        if (
            isinstance(src, fx.Node)
            and src.op == "call_function"
            and src.target in ADDS
            and len(src.args) == 2
            and not src.kwargs
            and len(src.users) == 1
            and all(isinstance(a, fx.Node) for a in src.args)
        ):
            add = src
            a, b = add.args
            src, z = (a, b) if single_call_conv(a) and a is not b else (b, a)
        if not single_call_conv(src) or src is z or len(src.args) != 1 or src.kwargs:
            continue
        target = src.target
        gm.set_submodule(target, ConvAddReLU(modules[target]))
        with gm.graph.inserting_before(relu):
            new = gm.graph.call_module(target, (src.args[0],) if z is None else (src.args[0], z))
        relu.replace_all_uses_with(new)
        for dead in (relu, add, src):
            if dead is not None:
                gm.graph.erase_node(dead)
        count += 1
    return count


def fast_copy(
    backbone: nn.Module, dtype: torch.dtype, probe: torch.Tensor, epilogues: bool = True
) -> Folded | None:
    """The folded copy in `dtype`, or None where it cannot stand in for the backbone: a float16 overflow of
    a folded weight, or a forward that fails with autocast off (a backbone mixing dtypes in its own code).
    `probe` is one normalised image on the backbone's device."""
    folded = folded_copy(backbone, epilogues)
    module = folded.module.to(dtype)
    if dtype == torch.float16:
        tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
        if tensors and not _all_finite(tensors):
            return None
    try:
        with torch.no_grad(), torch.autocast(probe.device.type, enabled=False):
            features = module(probe.to(dtype))
    except Exception:  # noqa: BLE001 - whatever fails here, the autocast path still works
        return None
    if dtype == torch.float16 and not _all_finite(list(features)):  # activations past float16's range
        return None
    return folded._replace(module=module)


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def fold_mode(training: bool, device_type: str) -> str | None:
    """MAMBAAD_ENCODER_FOLD: unset, empty or auto (the default since v1.16) the float16 copy when the encoder
    is in eval mode (scoring) on a GPU, autocast's own path in training and on CPUs (float16 convolutions
    ran 20x slower than bf16 autocast's on a 2-core x86 CPU); 0 autocast's path always (module docstring);
    and in training too: bn BatchNorm folding only, fp16 folding and epilogues in float16, anything else
    folding and the cuDNN conv epilogues in the autocast dtype."""
    value = os.environ.get(FOLD_ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return "fp16" if not training and device_type == "cuda" else None
    return None if value == "0" else value if value in ("bn", "fp16") else "all"


def autocast_fast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype when autocast is on for `device_type` with a 16-bit dtype, else None."""
    dtype = autocast_dtype(device_type)
    return dtype if dtype in FAST_DTYPES else None


def tensor_fingerprint(tensors: Iterable[torch.Tensor]) -> tuple | None:
    """(storage, version) of each tensor, to tell when a copy made from them is stale: .to() gives tensors
    new storage, load_state_dict and other in-place writes bump their version. None when one is an
    inference tensor (made under torch.inference_mode), which keeps no version."""
    try:
        return tuple((t.data_ptr(), t._version) for t in tensors)
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None


class FoldCache:
    """One fast copy of a backbone, rebuilt when the device, the dtype or the backbone's tensors change.

    A plain object (no nn.Module), so that the module holding it does not register the copy."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.entry: Folded | None = None  # None under a key: the copy cannot be used there
        self.rebuilds_in_a_row = 0
        self._tensor_dicts: tuple[nn.Module | None, list[dict]] = (None, [])

    def lookup(
        self, backbone: nn.Module, x: torch.Tensor, training: bool = False
    ) -> tuple[nn.Module, torch.dtype, torch.dtype] | None:
        """(copy, its dtype, the features' dtype) to run the backbone's forward of normalised images `x` with,
        or None: autocast's path. The features' dtype is autocast's; the copy's is too, but for mode fp16.
        `training`: the module holding the backbone is in training mode (fold_mode).

        None under torch.compile (the fingerprint reads data_ptr and version counters, which dynamo would
        trace or break on; a compiled region has its own fusions) and with MAMBAAD_ENCODER_FOLD=0."""
        if torch.compiler.is_compiling():
            return None
        mode = fold_mode(training, x.device.type)
        out_dtype = autocast_fast_dtype(x.device.type) if mode else None
        if out_dtype is None:
            return None
        dtype = torch.float16 if mode == "fp16" else out_dtype
        fingerprint = self._fingerprint(backbone)
        if fingerprint is None:
            return None
        key = (x.device, dtype, mode, fingerprint)
        if key == self.key:
            self.rebuilds_in_a_row = 0
            return None if self.entry is None else (self.entry.module, dtype, out_dtype)
        # Never build inside a CUDA graph capture: the copy's kernels would be recorded, not run (and the
        # float16 check syncs). GraphedStep's eager warm-up calls build it before; a capture that finds
        # no copy for its key records the autocast path.
        if x.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return None
        if self.rebuilds_in_a_row >= MAX_REBUILDS_IN_A_ROW:
            return None  # something rewrites the backbone at every forward: building copies costs more
        self.rebuilds_in_a_row += 1
        self.key, self.entry = None, None  # free the old copy before building the new one
        self.entry = fast_copy(backbone, dtype, x[:1].detach(), epilogues=mode in ("all", "fp16"))
        self.key = key
        return None if self.entry is None else (self.entry.module, dtype, out_dtype)

    def _fingerprint(self, backbone: nn.Module) -> tuple | None:
        """tensor_fingerprint of every parameter and buffer (None, so no copy, for a backbone holding
        inference tensors). The modules' tensor dicts are listed once per backbone object (a frozen backbone
        keeps its structure), which keeps this to ~40 us for ResNet-34."""
        owner, dicts = self._tensor_dicts
        if owner is not backbone:
            dicts = [d for m in backbone.modules() for d in (m._parameters, m._buffers) if d]
            self._tensor_dicts = (backbone, dicts)
        return tensor_fingerprint(t for d in dicts for t in d.values() if t is not None)

    # Copies and pickles of the module holding the cache start with an empty one.
    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
