"""The image cache (data.cache_images): the same tensors as decoding, rebuilt when an image changes, never
half-written, shared with DataLoader workers."""

import os
import pickle

import numpy as np
import pytest
import torch
from tiny_data import SIZE, make_dataset

from mambaad_cli.data import build_datasets, cache_images, write_png
from mambaad_cli.data import image_cache as ic
from mambaad_cli.data.errors import DataError
from mambaad_cli.data.sample import collate_samples


@pytest.fixture()
def datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBAAD_CACHE", str(tmp_path / "cache"))
    root = make_dataset(tmp_path / "data", classes=("disc",), n_train=4, n_good=1, n_bad=2)
    # one image of another size and shape, so that the cache resizes (to 48: not the stored 64)
    write_png(root / "disc" / "train" / "good" / "wide.png", np.full((30, 70, 3), 77, np.uint8))
    from mambaad_cli.config import DataConfig

    train_ds, test_ds, _ = build_datasets(DataConfig(dataset="folder", root=str(root), image_size=48))
    return root, train_ds, test_ds


def samples(ds):
    return [ds[i] for i in range(len(ds))]


def test_cached_images_and_masks_equal_decoded_ones(datasets):
    _, train_ds, test_ds = datasets
    said = []
    cached = cache_images((train_ds, test_ds), workers=2, say=said.append)
    assert len(said) == 2 and all("decoding" in s for s in said)  # one build per split
    for plain, ds in zip((train_ds, test_ds), cached, strict=True):
        assert ds.cache is not None
        for a, b in zip(samples(plain), samples(ds), strict=True):
            assert torch.equal(a.image, b.image) and a.image.dtype == b.image.dtype
            assert torch.equal(a.mask, b.mask)
            assert (a.label, a.cls_name, a.defect, a.path) == (b.label, b.cls_name, b.defect, b.path)
    assert any(s.mask.sum() > 0 for s in samples(cached[1]))  # the defects' masks came through


def test_second_use_reads_the_files_without_decoding(datasets, monkeypatch):
    _, train_ds, _ = datasets
    (first,) = cache_images((train_ds,), workers=1)
    monkeypatch.setattr(ic, "read_image", lambda *a: pytest.fail("decoded again"))
    said = []
    (second,) = cache_images((train_ds,), workers=1, say=said.append)
    assert said == [] and second.cache.key == first.cache.key
    assert torch.equal(second[0].image, first[0].image)


def test_an_edited_image_makes_a_new_cache(datasets):
    root, train_ds, _ = datasets
    (before,) = cache_images((train_ds,), workers=1)
    path = root / train_ds.records[0]["img_path"]
    write_png(path, np.full((SIZE, SIZE, 3), 7, np.uint8))
    os.utime(path, ns=(0, 123))  # a different modification time even on a coarse clock
    (after,) = cache_images((train_ds,), workers=1)
    assert after.cache.key != before.cache.key
    assert torch.allclose(after[0].image, torch.full((3, 48, 48), 7 / 255))


def test_a_failed_build_leaves_nothing_that_looks_complete(datasets, monkeypatch):
    _, train_ds, _ = datasets
    folder = ic.cache_root()
    real = ic._decode
    calls = []

    def flaky(root, record, size):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk pulled out")
        return real(root, record, size)

    monkeypatch.setattr(ic, "_decode", flaky)
    with pytest.raises(RuntimeError):
        cache_images((train_ds,), workers=1)
    assert not list(folder.glob("*.json")) and not list(folder.glob("*.npy"))
    monkeypatch.setattr(ic, "_decode", real)
    (ds,) = cache_images((train_ds,), workers=1)
    assert torch.equal(ds[2].image, train_ds[2].image)


def test_an_unwritable_cache_folder_is_one_clear_error(datasets, tmp_path, monkeypatch):
    _, train_ds, _ = datasets
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MAMBAAD_CACHE", str(blocker))
    with pytest.raises(DataError, match="data.cache_images: cannot write the image cache in"):
        cache_images((train_ds,), workers=1)


def test_subsets_and_dataloader_workers_read_the_cache(datasets):
    _, train_ds, _ = datasets
    (ds,) = cache_images((train_ds,), workers=1)
    part = ds.subset(ds.records[1:3])
    assert part.cache is ds.cache
    clone = pickle.loads(pickle.dumps(part))  # what a spawned worker gets: file names, no arrays
    assert clone.cache._arrays is None and torch.equal(clone[0].image, train_ds[1].image)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_samples)
    plain = torch.utils.data.DataLoader(train_ds, batch_size=3, num_workers=0, collate_fn=collate_samples)
    for a, b in zip(loader, plain, strict=True):
        assert torch.equal(a["image"], b["image"])
