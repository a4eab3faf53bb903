"""How long a checkpoint holds the training loop up: written in the loop against in the background.

    python benchmarks/checkpoint_bench.py --preset mvtec --repeats 5 [--device cuda]

The preset's model with random weights and AdamW moments filled by one step; each repeat times
CheckpointWriter.save() (what the loop waits for) in the foreground (snapshot + both files written) and in
the background (the snapshot only), then how long the background write took to land. Files go to a
temporary folder beside --dir (default: the system's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mambaad_cli.config import load_preset
from mambaad_cli.engine.checkpoint_writer import CheckpointWriter
from mambaad_cli.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mvtec")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    cfg = load_preset(args.preset, {"model.encoder.weights": "none"})
    model = build_model(cfg).to(args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    for p in params:  # one step's worth of moments, without a forward pass
        p.grad = torch.randn_like(p)
    opt.step()
    rows = {"foreground_s": [], "background_hold_s": [], "background_landed_s": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for i in range(args.repeats):
            for background in (False, True):
                writer = CheckpointWriter(background)
                start = time.perf_counter()
                writer.save(Path(folder), model, opt, sched, cfg, ["a"], i, i)
                held = time.perf_counter() - start
                writer.wait()
                landed = time.perf_counter() - start
                if background:
                    rows["background_hold_s"].append(held)
                    rows["background_landed_s"].append(landed)
                else:
                    rows["foreground_s"].append(held)
        sizes = {f.name: f.stat().st_size for f in Path(folder).iterdir()}
    result = {"preset": args.preset, "device": args.device, "repeats": args.repeats,
              "file_mib": {k: round(v / 2**20, 1) for k, v in sizes.items()},
              **{k: round(statistics.median(v), 3) for k, v in rows.items()},
              "all": {k: [round(x, 3) for x in v] for k, v in rows.items()}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
