"""How far the frozen encoder's 16-bit features sit from float32's, with and without the BatchNorm-folded copy
(model/encoder_fold.py, MAMBAAD_ENCODER_FOLD), on CPU.

    python benchmarks/encoder_fold_error.py --root ../shared/data/real-dev/tire --images 8

Per feature scale, the mean of 1 - cos (along channels, what the anomaly map is made of) against the float32
backbone for: autocast's own path (0, training's default), the folded copy (1, and bn: folding only; fp16:
in float16, scoring's default since v1.16), and, in float32 arithmetic, the parameters alone rounded to bf16:
the folded conv weights, or the unfolded ones; and both networks wholly in fp16, without autocast.

With --maps, also the whole model's anomaly maps under bf16 autocast against float32's, with the encoder on
autocast's path (0) and as the float16 copy (fp16). The decoder's weights are random: a check of how the
encoder's rounding carries into the maps, not of a trained model.

Images: the PNG / JPEG files under --root (test folders included), resized to --size, or random ones
without --root.
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from mambaad_cli.config import load_preset
from mambaad_cli.data.imageio import read_image
from mambaad_cli.data.resize import resize_uint8
from mambaad_cli.model import build_model
from mambaad_cli.model.anomaly_map import anomaly_map
from mambaad_cli.model.encoder_fold import FOLD_ENV, FoldCache, folded_copy


def load_images(root: str, count: int, size: int) -> torch.Tensor:
    if not root:
        return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0))
    paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = [p for p in paths if "ground_truth" not in p.parts][:count]
    if not paths:
        raise SystemExit(f"--root {root}: no images found")
    return torch.stack([resize_uint8(read_image(p), size).float() / 255 for p in paths])  # (N, 3, S, S)


def one_minus_cos(feats: list[torch.Tensor], ref: list[torch.Tensor]) -> list[float]:
    pairs = zip(feats, ref, strict=True)
    return [float((1 - F.cosine_similarity(f.float(), r, dim=1)).mean()) for f, r in pairs]


def rounded_conv_weights(module: torch.nn.Module) -> torch.nn.Module:
    """A copy whose conv weights (4-D parameters) are rounded to bf16 and kept in float32."""
    out = copy.deepcopy(module)
    with torch.no_grad():
        for p in out.parameters():
            if p.dim() == 4:
                p.copy_(p.to(torch.bfloat16).float())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default="", help="a folder of images (default: random images)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--encoder", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="bundled", help="model.encoder.weights (bundled: Lite0's)")
    parser.add_argument("--maps", action="store_true", help="also the whole model's anomaly maps (slower)")
    args = parser.parse_args()
    cfg = load_preset("folder", {"model.encoder.name": args.encoder, "model.encoder.weights": args.weights})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    enc = model.encoder
    images = load_images(args.root, args.images, args.size)
    x = (images - enc.mean) / enc.std
    rows = []
    with torch.no_grad():
        ref = enc(images)
        for mode in ("0", "1", "bn", "fp16"):
            os.environ[FOLD_ENV] = mode
            enc._fold = FoldCache()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                rows.append((f"bf16 autocast, {FOLD_ENV}={mode}", one_minus_cos(enc(images), ref)))
        folded = folded_copy(enc.backbone, epilogues=False).module
        rows.append(("fp32 arithmetic, folded conv weights rounded to bf16",
                     one_minus_cos(rounded_conv_weights(folded)(x), ref)))
        rows.append(("fp32 arithmetic, unfolded conv weights rounded to bf16",
                     one_minus_cos(rounded_conv_weights(enc.backbone)(x), ref)))
        # the same two networks wholly in fp16 (finer than bf16): is it the fold or bf16's 8 bits?
        rows.append(("fp16, the folded copy", one_minus_cos(copy.deepcopy(folded).half()(x.half()), ref)))
        rows.append(("fp16, the backbone", one_minus_cos(copy.deepcopy(enc.backbone).half()(x.half()), ref)))
    source = args.root or "random"
    print(f"{args.encoder}, {len(images)} images at {args.size} ({source}); mean 1 - cos per scale")
    for label, values in rows:
        print(f"{label:58s} " + "  ".join(f"{v:.2e}" for v in values))
    if args.maps:
        print_map_errors(model, images)


def model_maps(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        enc, dec = model(images)
        return anomaly_map(enc, dec, images.shape[-1])


def print_map_errors(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Relative L1 error of bf16 maps (and of their image scores, the maps' maxima) against float32's."""
    ref = model_maps(model, images)
    print("anomaly maps under bf16 autocast against float32: mean |map - ref| / mean ref, and the same for "
          "the image scores (max)")
    for mode in ("0", "fp16"):
        os.environ[FOLD_ENV] = mode
        model.encoder._fold = FoldCache()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            maps = model_maps(model, images)
        map_err = float((maps - ref).abs().mean() / ref.abs().mean())
        scores, ref_scores = maps.flatten(1).amax(1), ref.flatten(1).amax(1)
        score_err = float((scores - ref_scores).abs().mean() / ref_scores.abs().mean())
        print(f"{'encoder ' + FOLD_ENV + '=' + mode:58s} {map_err:.2e}  {score_err:.2e}")


if __name__ == "__main__":
    main()
