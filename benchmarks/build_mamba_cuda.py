"""Build mamba_ssm's ``selective_scan_cuda`` extension from its source distribution, for this GPU only.

    python benchmarks/build_mamba_cuda.py --sdist path/to/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda

It is the baseline our Triton scan is timed against (never a dependency, never committed). setup.py would
compile 10 sources for 9 architectures; this JIT-compiles them with torch's cpp_extension for the visible
GPU's architecture alone (about 2 minutes on 16 cores), with the flags mamba_ssm's setup.py uses. Afterwards
``import selective_scan_cuda`` works with ``--out`` on sys.path (``load`` below does that).
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
from pathlib import Path


def build(sdist: Path, out: Path, verbose: bool = False):
    import torch
    from torch.utils.cpp_extension import load

    out.mkdir(parents=True, exist_ok=True)
    src_root = out / "src"
    if not src_root.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(src_root, filter="data")
    csrc = next(src_root.glob("mamba_ssm-*/csrc/selective_scan"))
    sources = [str(csrc / "selective_scan.cpp")] + sorted(str(p) for p in csrc.glob("selective_scan_*.cu"))
    major, minor = torch.cuda.get_device_capability()
    arch = f"{major}{minor}"
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 8))
    flags = [
        "-O3", "-std=c++17", "--use_fast_math", "--expt-relaxed-constexpr", "--expt-extended-lambda",
        "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_BFLOAT16_OPERATORS__",
        "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_BFLOAT162_OPERATORS__",
        "-U__CUDA_NO_BFLOAT162_CONVERSIONS__", f"-gencode=arch=compute_{arch},code=sm_{arch}", "-lineinfo",
    ]
    build_dir = out / "build"
    build_dir.mkdir(exist_ok=True)
    module = load(
        name="selective_scan_cuda", sources=sources, extra_cflags=["-O3", "-std=c++17"],
        extra_cuda_cflags=flags, extra_include_paths=[str(csrc)], build_directory=str(build_dir),
        verbose=verbose,
    )
    sys.modules["selective_scan_cuda"] = module
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mamba_cuda"))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    module = build(args.sdist, args.out, args.verbose)
    print("built", module.__file__)


if __name__ == "__main__":
    main()
