"""Folder-tree layouts: MVTec-AD, MVTec-3D (RGB only), Uni-Medical and a user's own folders.

The scanners skip what they cannot use and record it in a ProblemLog: a defective image without a
mask, a mask without an image, a class folder without training images. scan_mvtec / scan_mvtec3d
are the strict forms for callers with no problem report: the first finding that drops data is a
DataError.
Pairing is by file stem: <stem>_mask.* (MVTec) or <stem>.*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mambaad_cli.data.errors import DataError
from mambaad_cli.data.imageio import IMAGE_EXTENSIONS
from mambaad_cli.data.manifest import NORMAL_FOLDER, Meta, Record, make_record, select_classes
from mambaad_cli.data.problems import IGNORED, SKIPPED, ProblemLog
from mambaad_cli.data.validate import drop_untrainable_classes


@dataclass(frozen=True)
class TreeLayout:
    image_subdir: str  # "" (MVTec) or "rgb" (MVTec-3D): where a specie folder keeps its images
    normal_phases: tuple[str, ...]  # phases whose good/ images train the model
    mask_in_specie: str  # "" (MVTec: cls/ground_truth/<specie>) or "gt" (MVTec-3D: cls/test/<specie>/gt)

    def images_dir(self, cls_dir: Path, phase: str, specie: str) -> Path:
        folder = cls_dir / phase / specie
        return folder / self.image_subdir if self.image_subdir else folder

    def mask_dir(self, cls_dir: Path, specie: str) -> Path:
        if self.mask_in_specie:
            return cls_dir / "test" / specie / self.mask_in_specie
        return cls_dir / "ground_truth" / specie


MVTEC = TreeLayout(image_subdir="", normal_phases=("train",), mask_in_specie="")
MVTEC3D = TreeLayout(image_subdir="rgb", normal_phases=("train", "validation"), mask_in_specie="gt")
CLASS_MARKERS = ("train", "test", "ground_truth")  # a sub-folder with one of these is a class folder
# What OpenCV decodes (imgcodecs), beyond the common IMAGE_EXTENSIONS; the check step rejects by name
# any file whose format this OpenCV build cannot read (EXR, for one, is off unless enabled).
OPENCV_EXTENSIONS = (
    *IMAGE_EXTENSIONS,
    ".jpe",
    ".jp2",
    ".dib",
    ".pbm",
    ".pgm",
    ".ppm",
    ".pnm",
    ".pxm",
    ".pfm",
)
OPENCV_EXTENSIONS += (".sr", ".ras", ".hdr", ".pic", ".exr", ".avif")


def is_opencv_image(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.lower().endswith(OPENCV_EXTENSIONS)


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_opencv_image(p))


def existing_root(root) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    return root


def class_folders(root: Path, classes: list[str] | None) -> dict[str, Path]:
    """{class name: folder}: sub-folders holding train/, test/ or ground_truth/ (others are not classes)."""
    found = {p.name: p for p in _subfolders(root) if any((p / m).is_dir() for m in CLASS_MARKERS)}
    if not found and not classes:
        raise DataError(f"no class folders (with train/ or test/ inside) found in dataset root {root}")
    return {c: found[c] for c in select_classes(sorted(found), classes, root)}


def _test_records(root: Path, cls_dir: Path, cls: str, layout: TreeLayout, log: ProblemLog) -> list[Record]:
    records: list[Record] = []
    for specie_dir in _subfolders(cls_dir / "test"):
        specie = specie_dir.name
        images = _images(layout.images_dir(cls_dir, "test", specie))
        if specie == NORMAL_FOLDER:
            records += [make_record(root, p, None, cls, specie, 0) for p in images]
            continue
        mask_dir = layout.mask_dir(cls_dir, specie)
        masks = {p.stem: p for p in _images(mask_dir)}
        used: set[Path] = set()
        for image in images:
            mask = masks.get(f"{image.stem}_mask") or masks.get(image.stem)
            if mask is None:
                log.add(
                    image,
                    f"defective image {image.name} has no mask (expected {image.stem}_mask.png in "
                    f"{log.relative(mask_dir)})",
                    SKIPPED,
                )
                continue
            used.add(mask)
            records.append(make_record(root, image, mask, cls, specie, 1))
        for orphan in sorted(set(masks.values()) - used):
            log.add(orphan, "mask without an image", IGNORED)
    return records


def scan_class(root: Path, cls_dir: Path, cls: str, layout: TreeLayout, log: ProblemLog) -> dict[str, list]:
    """{"train": [...], "test": [...]} (+ "validation" for MVTec-3D) records of one class folder."""
    split: dict[str, list[Record]] = {}
    for phase in layout.normal_phases:
        images = _images(layout.images_dir(cls_dir, phase, NORMAL_FOLDER))
        split[phase] = [make_record(root, p, None, cls, NORMAL_FOLDER, 0) for p in images]
    split["test"] = _test_records(root, cls_dir, cls, layout, log)
    return split


def scan_tree(root, classes: list[str] | None, log: ProblemLog, layout: TreeLayout = MVTEC) -> Meta:
    """Manifest of a multi-class tree: ROOT/<class>/{train,test,ground_truth}/... (see TreeLayout)."""
    root = existing_root(root)
    meta: Meta = {phase: {} for phase in (*layout.normal_phases, "test")}
    for cls, cls_dir in class_folders(root, classes).items():
        for phase, records in scan_class(root, cls_dir, cls, layout, log).items():
            meta[phase][cls] = records
    return meta


def scan_mvtec_tree(root, classes: list[str] | None, log: ProblemLog) -> Meta:
    return scan_tree(root, classes, log, MVTEC)


def scan_mvtec3d_tree(root, classes: list[str] | None, log: ProblemLog) -> Meta:
    return scan_tree(root, classes, log, MVTEC3D)


def scan_mvtec(root, classes: list[str] | None = None) -> Meta:
    """Manifest of an MVTec-AD layout; a DataError at the first inconsistency."""
    return _strict_scan(root, classes, MVTEC)


def scan_mvtec3d(root, classes: list[str] | None = None) -> Meta:
    """Manifest of an MVTec-3D-AD layout (RGB only; validation good joins training in split_records);
    a DataError at the first inconsistency."""
    return _strict_scan(root, classes, MVTEC3D)


def _strict_scan(root, classes: list[str] | None, layout: TreeLayout) -> Meta:
    # stray masks without an image lose no data: tolerated, as a scan without a report always did
    log = ProblemLog(Path(root).expanduser(), strict=True, tolerated=(IGNORED,))
    return drop_untrainable_classes(scan_tree(root, classes, log, layout), log, existing_root(root))


def scan_user_folder(root, classes: list[str] | None, log: ProblemLog) -> Meta:
    """A user's own images: either MVTec layout with class folders, or one class directly in ROOT
    (ROOT/train/good, optional ROOT/test/<defect> and ROOT/ground_truth/<defect>), named after ROOT."""
    root = existing_root(root)
    if not (root / "train").is_dir():
        return scan_tree(root, classes, log, MVTEC)
    cls = root.resolve().name or "default"
    select_classes([cls], classes, root)
    split = scan_class(root, root, cls, MVTEC, log)
    return {phase: {cls: records} for phase, records in split.items()}
