"""A tiny two-class MVTec-layout dataset for end-to-end tests: striped backgrounds, red blobs as defects."""

import numpy as np

from mambaad_cli.data import write_png

SIZE = 64


def make_dataset(root, classes=("disc", "stripes"), n_train=8, n_good=2, n_bad=2, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]

    def clean(ci):
        img = np.full((SIZE, SIZE, 3), 90 + 40 * ci, np.uint8)
        img[(xx // 8 + ci) % 2 == 0] = 160
        return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)

    for ci, cls in enumerate(classes):
        for i in range(n_train):
            write_png(root / cls / "train" / "good" / f"{i:03d}.png", clean(ci))
        for i in range(n_good):
            write_png(root / cls / "test" / "good" / f"{i:03d}.png", clean(ci))
        for i in range(n_bad):
            img = clean(ci)
            mask = (yy - 20 - 8 * i) ** 2 + (xx - 30) ** 2 < 36
            img[mask] = (255, 0, 0)
            write_png(root / cls / "test" / "blob" / f"{i:03d}.png", img)
            write_png(root / cls / "ground_truth" / "blob" / f"{i:03d}_mask.png", mask)
    return root
