"""CUDA-graph training steps against eager ones, on a GPU: same losses, same weights.

    python benchmarks/graphs_check.py --preset mvtec --image-size 128 --steps 8

Copies of one randomly initialised model train on the same random batches through ``make_train_step``:
twice eagerly (the noise floor: the scan's backward sums with atomics, so runs are not bitwise equal),
once with train.cuda_graphs (engine/graphs.py: warm-up calls, the capture, replays). The learning rate
drops tenfold half-way (the scheduler writes the rate the captured optimizer step reads), and one batch
of another size runs eagerly in the middle. Stochastic depth is off, so the runs draw no random numbers.
Prints each step's losses and the largest parameter difference from the first eager run; exits 1 when
the graphed run is further from it than ten times the second eager run is. Then the same for scoring
(eval.cuda_graphs, engine/scoring.py): the maps of graphed and eager scoring, batch by batch.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from mambaad_cli.config import load_preset
from mambaad_cli.engine.acceleration import apply_speed_options, to_model_input
from mambaad_cli.engine.scoring import make_scorer
from mambaad_cli.engine.train import adamw, make_train_step, param_groups
from mambaad_cli.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mvtec")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.manual_seed(0)
    base = {"model.encoder.weights": "none", "model.decoder.drop_path_rate": 0.0,
            "train.precision": args.precision, "train.grad_clip": 0.5}
    cfgs = {name: load_preset(args.preset, {**base, "train.cuda_graphs": name == "graphs"})
            for name in ("eager", "eager2", "graphs")}
    model0 = build_model(cfgs["eager"]).to(device)
    g = torch.Generator().manual_seed(1)
    sizes = [args.batch] * args.steps
    sizes[args.steps // 2 + 1] = args.batch // 2  # one odd batch: eager inside the graphed run
    batches = [torch.rand(n, 3, args.image_size, args.image_size, generator=g) for n in sizes]
    losses, weights = {}, {}
    for name, cfg in cfgs.items():
        model = copy.deepcopy(model0)
        apply_speed_options(model, cfg.train)
        model.train()
        opt = adamw(param_groups(model, 1e-4), device, 1e-3, cfg.train.cuda_graphs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < args.steps // 2 else 0.1)
        step = make_train_step(model, model, opt, cfg)
        losses[name] = []
        for images in batches:
            losses[name].append(float(step(to_model_input(images, device, cfg.train.channels_last))))
            sched.step()
        weights[name] = {k: v.detach().float() for k, v in model.named_parameters()}
        print(f"{name}: captured={getattr(step, 'captured', False)}", flush=True)
    def loss_gap(name):
        return max(abs(a - b) / abs(a) for a, b in zip(losses["eager"], losses[name], strict=True))

    def weight_gap(name):
        return max((weights["eager"][k] - weights[name][k]).abs().max().item() for k in weights["eager"])

    for i, (a, a2, b) in enumerate(zip(losses["eager"], losses["eager2"], losses["graphs"], strict=True)):
        print(f"step {i} batch {sizes[i]}: eager {a:.6f}  eager again {a2:.6f}  graphs {b:.6f}")
    gaps = {name: (loss_gap(name), weight_gap(name)) for name in ("eager2", "graphs")}
    for name, (lg, wg) in gaps.items():
        print(f"{name} vs eager: largest loss rel. difference {lg:.2e}, parameter difference {wg:.2e}")
    (noise_l, noise_w), (lg, wg) = gaps["eager2"], gaps["graphs"]
    ok = lg <= 10 * noise_l + 1e-6 and wg <= 10 * noise_w + 1e-6
    print("training:", "PASS" if ok else "FAIL")

    model0.eval()
    eval_cfgs = {name: load_preset(args.preset, {**base, "eval.cuda_graphs": name == "graphs"})
                 for name in ("eager", "graphs")}
    scorers = {name: make_scorer(model0, cfg, device) for name, cfg in eval_cfgs.items()}
    map_gap = 0.0
    with torch.inference_mode():
        for images in batches:
            images = images.to(device)
            maps = {name: scorer(images) for name, scorer in scorers.items()}
            gap = (maps["eager"] - maps["graphs"]).abs().max() / maps["eager"].abs().max()
            map_gap = max(map_gap, gap.item())
    print(f"scoring: captured={scorers['graphs'].captured}; largest map difference {map_gap:.2e} (relative)")
    ok = ok and map_gap < 1e-5
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
