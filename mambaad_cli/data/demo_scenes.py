"""Procedural scenes and defects of the demo dataset (numpy + OpenCV drawing, 128 x 128).

A scene is drawn as an albedo image (float32 RGB in [0, 1]), then lit and given sensor noise.
Defects are drawn into the albedo. The ground-truth mask is the set of pixels that differ
between the scene rendered with and without the defect (same seed, so same lighting and the
same noise): it is exact by construction. Shapes are drawn without antialiasing (sub-pixel
positions via OpenCV's fixed-point `shift`) so a defect never leaves faint, invisible edges.

Four categories: two textures (fabric: a twill weave; wood: warped grain) and two objects
(flange: a disc with six bolts; pcb: a board with chips, resistors and capacitors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SIZE = 128
SHIFT = 4  # OpenCV fixed-point bits for sub-pixel coordinates
MIN_DEFECT_PIXELS = 20  # resample a defect that changes fewer pixels than this
_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

Colour = tuple[float, float, float]


# --------------------------------------------------------------------------- drawing helpers


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _fill(image: np.ndarray, points: np.ndarray, colour) -> None:
    cv2.fillPoly(image, [_fixed(points)], colour, lineType=cv2.LINE_8, shift=SHIFT)


def _disc(image: np.ndarray, centre, radius: float, colour) -> None:
    c = tuple(int(v) for v in np.round(np.asarray(centre) * (1 << SHIFT)))
    cv2.circle(image, c, int(round(radius * (1 << SHIFT))), colour, -1, cv2.LINE_8, SHIFT)


def _curve(image: np.ndarray, points: np.ndarray, colour, thickness: int) -> None:
    cv2.polylines(image, [_fixed(points)], False, colour, thickness, cv2.LINE_8, SHIFT)


def _rect(w: float, h: float) -> np.ndarray:
    return np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])


def _polygon(n: int, radius: float, angle: float) -> np.ndarray:
    a = angle + np.arange(n) * 2 * np.pi / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * t * (1 - t) * np.asarray(p1) + t**2 * np.asarray(p2)


def _random_curve(rng: np.random.Generator, start, length: float, bend: float) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi)
    direction = np.array([math.cos(theta), math.sin(theta)])
    normal = np.array([-direction[1], direction[0]])
    p0 = np.asarray(start, dtype=np.float64)
    p2 = p0 + length * direction
    return _bezier(p0, (p0 + p2) / 2 + bend * length * normal, p2)


def smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Low-frequency noise (SIZE, SIZE), about unit variance: a coarse normal grid upsampled."""
    grid = rng.normal(size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def _luminance(pixels: np.ndarray) -> float:
    return float((pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean()) if pixels.size else 0.5


@dataclass(frozen=True)
class Pose:
    """Where an object sits: local coordinates (pixels, origin at the object centre) -> image."""

    cx: float
    cy: float
    angle: float

    def __call__(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.stack([self.cx + c * p[:, 0] - s * p[:, 1], self.cy + s * p[:, 0] + c * p[:, 1]], axis=1)


def _pick_point(surface: np.ndarray, rng: np.random.Generator, margin: int = 10) -> np.ndarray:
    """A random point (x, y) of the surface, away from the image border."""
    inner = np.zeros_like(surface)
    inner[margin:-margin, margin:-margin] = surface[margin:-margin, margin:-margin]
    ys, xs = np.nonzero(inner)
    i = int(rng.integers(len(ys)))
    return np.array([xs[i] + rng.random(), ys[i] + rng.random()])


# --------------------------------------------------------------------------- surface defects


def draw_scratch(albedo: np.ndarray, surface: np.ndarray, rng: np.random.Generator) -> None:
    """A thin curved line, bright on dark surfaces and dark on bright ones."""
    points = _random_curve(rng, _pick_point(surface, rng), rng.uniform(20, 45), rng.uniform(-0.3, 0.3))
    layer = np.zeros(surface.shape, np.uint8)
    _curve(layer, points, 1, int(rng.choice([1, 1, 2])))
    hit = layer.astype(bool) & surface
    bright = _luminance(albedo[hit]) < 0.5
    colour = np.array((0.96, 0.94, 0.88) if bright else (0.10, 0.08, 0.07), np.float32)
    albedo[hit] = 0.15 * albedo[hit] + 0.85 * colour


def draw_hole(albedo: np.ndarray, surface: np.ndarray, rng: np.random.Generator) -> None:
    """A dark irregular blob with a frayed rim (darker on bright surfaces, lighter on dark ones)."""
    centre = _pick_point(surface, rng, margin=12)
    radius = rng.uniform(3.0, 6.5)
    wobble = rng.uniform(-0.25, 0.25, 18)
    wobble = (wobble + np.roll(wobble, 1) + np.roll(wobble, -1)) / 3
    angles = np.linspace(0, 2 * np.pi, 18, endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    radii = radius * (1 + wobble)[:, None]
    inner = np.zeros(surface.shape, np.uint8)
    outer = np.zeros(surface.shape, np.uint8)
    _fill(inner, centre + radii * unit, 1)
    _fill(outer, centre + (radii + rng.uniform(1.2, 2.2)) * unit, 1)
    inner_mask = inner.astype(bool) & surface
    rim = outer.astype(bool) & ~inner.astype(bool) & surface
    if _luminance(albedo[rim]) > 0.45:
        albedo[rim] *= 0.45
    else:
        albedo[rim] = 0.35 * albedo[rim] + 0.65 * np.array((0.85, 0.80, 0.70), np.float32)
    shadow = 0.04 + 0.03 * np.clip((_Y[inner_mask] - centre[1]) / radius, -1, 1)  # darker at the top
    albedo[inner_mask] = shadow[:, None] * np.array((1.0, 0.95, 0.9), np.float32)


def draw_stain(albedo: np.ndarray, surface: np.ndarray, rng: np.random.Generator, palette) -> None:
    """A soft translucent blob with a definite edge; its colour is kept away from the surface's."""
    centre = _pick_point(surface, rng, margin=14)
    field = np.zeros(surface.shape, np.float32)
    for _ in range(int(rng.integers(2, 5))):
        g = centre + rng.normal(0, 4, 2)
        s = rng.uniform(3.5, 7.0)
        field += rng.uniform(0.6, 1.0) * np.exp(-((_X - g[0]) ** 2 + (_Y - g[1]) ** 2) / (2 * s * s))
    field *= 1 + 0.25 * smooth_noise(rng, 8)
    field /= field.max()
    support = (field > 0.35) & surface
    alpha = rng.uniform(0.5, 0.75) * (0.55 + 0.45 * (field[support] - 0.35) / 0.65)
    colour = np.array(palette[int(rng.integers(len(palette)))], np.float32) * rng.uniform(0.9, 1.1)
    mean = albedo[support].mean(axis=0) if support.any() else colour
    if np.linalg.norm(colour - mean) < 0.3:  # a stain of the surface's own colour: make it a dark one
        colour = mean * 0.4
    albedo[support] = (1 - alpha[:, None]) * albedo[support] + alpha[:, None] * np.clip(colour, 0, 1)


# --------------------------------------------------------------------------- categories


class Category:
    name: str
    defects: tuple[str, ...]
    stain_palette: tuple[Colour, ...] = ()
    n_parts: int = 0  # components that "missing_part" can remove

    def scene(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def draw(self, scene: dict, missing: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(albedo float32 (S, S, 3), surface bool (S, S): where surface defects may go)."""
        raise NotImplementedError

    def draw_extra(self, albedo: np.ndarray, surface: np.ndarray, scene: dict, rng: np.random.Generator):
        raise NotImplementedError


class Fabric(Category):
    """A 2/1 twill weave: blue warp, off-white weft, per-thread brightness jitter."""

    name = "fabric"
    defects = ("hole", "stain", "scratch")
    stain_palette = ((0.50, 0.36, 0.18), (0.78, 0.70, 0.30), (0.45, 0.08, 0.10))

    def scene(self, rng):
        return {
            "period": 5.2 + rng.uniform(-0.25, 0.25),
            "angle": rng.uniform(-0.07, 0.07),
            "offset": rng.uniform(0, 30, 2),
            "warp": np.array((0.16, 0.27, 0.55)) + rng.normal(0, 0.02, 3),
            "weft": np.array((0.80, 0.80, 0.84)) + rng.normal(0, 0.02, 3),
            "jitter": rng.normal(1.0, 0.06, (2, 64)),
        }

    def draw(self, scene, missing=None):
        c, s = math.cos(scene["angle"]), math.sin(scene["angle"])
        u = (c * _X + s * _Y + scene["offset"][0]) / scene["period"]
        v = (-s * _X + c * _Y + scene["offset"][1]) / scene["period"]
        i, j = np.floor(u).astype(int), np.floor(v).astype(int)
        fu, fv = u - i, v - j
        warp_on_top = (i - j) % 3 != 0
        warp_shade = (0.45 + 0.55 * np.sqrt(np.sin(np.pi * fu))) * scene["jitter"][0][i % 64]
        weft_shade = (0.45 + 0.55 * np.sqrt(np.sin(np.pi * fv))) * scene["jitter"][1][j % 64]
        colour = np.where(warp_on_top[..., None], scene["warp"], scene["weft"])
        shade = np.where(warp_on_top, warp_shade, weft_shade)
        return (colour * shade[..., None]).astype(np.float32), np.ones((SIZE, SIZE), bool)


class Wood(Category):
    """Wood grain: dark growth lines on a warped coordinate plus fine streaks along the grain."""

    name = "wood"
    defects = ("scratch", "hole", "stain")
    stain_palette = ((0.22, 0.15, 0.09), (0.33, 0.40, 0.30), (0.15, 0.18, 0.38))

    def scene(self, rng):
        streaks = np.convolve(rng.normal(0, 1, 520), np.ones(3) / 3, mode="same")
        return {
            "angle": rng.uniform(-0.1, 0.1),
            "offset": rng.uniform(0, 100),
            "period": rng.uniform(8.0, 10.5),
            "wave": (rng.uniform(1.5, 3.0), rng.uniform(0.006, 0.014), rng.uniform(0, 2 * np.pi)),
            "knots": smooth_noise(rng, 4) * rng.uniform(3.0, 5.0),
            "streaks": streaks / streaks.std(),
            "light": np.array((0.82, 0.64, 0.44)) + rng.normal(0, 0.02, 3),
            "dark": np.array((0.52, 0.34, 0.19)) + rng.normal(0, 0.02, 3),
        }

    def draw(self, scene, missing=None):
        c, s = math.cos(scene["angle"]), math.sin(scene["angle"])
        u = c * _X + s * _Y
        amp, freq, phase = scene["wave"]
        v = -s * _X + c * _Y + scene["offset"] + amp * np.sin(2 * np.pi * freq * u + phase) + scene["knots"]
        rings = (0.5 + 0.5 * np.sin(2 * np.pi * v / scene["period"])) ** 3
        streak = np.interp(np.mod(v * 2.5, 500), np.arange(520), scene["streaks"])
        t = np.clip(0.55 * rings + 0.12 * streak + 0.2, 0, 1)[..., None]
        albedo = scene["light"] * (1 - t) + scene["dark"] * t
        return albedo.astype(np.float32), np.ones((SIZE, SIZE), bool)


class Flange(Category):
    """A brushed metal disc with a centre bore and six hex bolts, on a dark table."""

    name = "flange"
    defects = ("scratch", "missing_part", "extra_part")
    n_parts = 6

    def scene(self, rng):
        return {
            "pose": Pose(64 + rng.uniform(-6, 6), 64 + rng.uniform(-6, 6), rng.uniform(0, 2 * np.pi)),
            "radius": rng.uniform(40, 43),
            "metal": 0.6 + rng.normal(0, 0.03) + np.array((0.0, 0.01, 0.03)),
            "table": 0.16 + rng.normal(0, 0.01) + 0.03 * smooth_noise(rng, 6),
            "brush": rng.uniform(0, 2 * np.pi),
            "highlight": rng.uniform(0, 2 * np.pi),
            "bolt_angles": rng.uniform(0, np.pi / 3, self.n_parts),
        }

    def bolt_centres(self, scene) -> np.ndarray:
        return scene["pose"](_polygon(self.n_parts, 29.0, 0.0))

    def draw(self, scene, missing=None):
        pose = scene["pose"]
        albedo = np.repeat(scene["table"][..., None], 3, axis=2).astype(np.float32)
        r = np.hypot(_X - pose.cx, _Y - pose.cy)
        phi = np.arctan2(_Y - pose.cy, _X - pose.cx)
        face = 1 + 0.06 * np.sin(2.1 * r + scene["brush"]) + 0.12 * np.cos(2 * (phi - scene["highlight"]))
        face = face * np.where(r > scene["radius"] - 2.2, 0.8, 1.0) * np.where((r > 16) & (r < 18), 1.15, 1.0)
        disc = r <= scene["radius"]
        albedo[disc] = (face[disc, None] * scene["metal"]).astype(np.float32)
        albedo[r < 13] = 0.06
        surface = disc & (r > 18.5) & (r < scene["radius"] - 2.5)
        bolts = np.zeros((SIZE, SIZE), np.uint8)
        for k, centre in enumerate(self.bolt_centres(scene)):
            _disc(bolts, centre, 6.5, 1)
            if k == missing:  # the bare threaded hole stays
                _disc(albedo, centre, 3.2, (0.07, 0.07, 0.08))
                continue
            angle = pose.angle + scene["bolt_angles"][k]
            _fill(albedo, centre + _polygon(6, 5.5, angle), (0.80, 0.80, 0.82))
            _fill(albedo, centre + _polygon(6, 2.2, angle), (0.18, 0.18, 0.20))
        return albedo, surface & ~bolts.astype(bool)

    def draw_extra(self, albedo, surface, scene, rng):
        centre = _pick_point(surface, rng)
        kind = int(rng.integers(3))
        if kind == 0:  # a brass washer
            outer = rng.uniform(4.0, 5.5)
            ring = (np.hypot(_X - centre[0], _Y - centre[1]) <= outer) & (
                np.hypot(_X - centre[0], _Y - centre[1]) > outer * 0.45
            )
            albedo[ring] = (0.86, 0.74, 0.40)
        elif kind == 1:  # a bright metal shaving
            _curve(
                albedo,
                _random_curve(rng, centre, rng.uniform(10, 18), rng.uniform(0.3, 0.5)),
                (0.97, 0.94, 0.85),
                2,
            )
        else:  # a stray dark nut
            _fill(albedo, centre + _polygon(6, 4.5, rng.uniform(0, 1)), (0.30, 0.30, 0.33))
            _disc(albedo, centre, 1.8, (0.05, 0.05, 0.05))


class Pcb(Category):
    """A green circuit board with traces, two chips, resistors and capacitors, on a dark background."""

    name = "pcb"
    defects = ("missing_part", "extra_part", "stain")
    stain_palette = ((0.78, 0.60, 0.22), (0.88, 0.88, 0.82), (0.36, 0.24, 0.12))
    # Board-local layout (pixels, origin at the board centre): name, kind, centre, then
    # chip: (w, h), pins per long side; res: None, vertical?; cap: radius, None.
    PARTS = (
        ("U1", "chip", (-16, -12), (30, 14), 7),
        ("U2", "chip", (26, -14), (14, 14), 3),
        ("R1", "res", (-30, 18), None, False),
        ("R2", "res", (-16, 18), None, False),
        ("R3", "res", (-2, 18), None, False),
        ("R4", "res", (36, 20), None, True),
        ("C1", "cap", (14, 24), 6.0, None),
        ("C2", "cap", (-38, -34), 5.0, None),
    )
    n_parts = len(PARTS)
    TRACES = (
        ((-28, -4), (-28, 12)),
        ((-20, -4), (-20, 10), (-16, 14)),
        ((-8, -4), (-2, 12)),
        ((2, -20), (14, -20), (18, -16)),
        ((26, -4), (26, 6), (36, 12)),
        ((14, 16), (14, 4), (26, 4)),
        ((-44, 30), (-36, 18)),
        ((-38, -28), (-30, -20)),
        ((0, 30), (20, 38), (36, 28)),
    )

    def scene(self, rng):
        return {
            "pose": Pose(64 + rng.uniform(-4, 4), 64 + rng.uniform(-4, 4), rng.uniform(-0.06, 0.06)),
            "board": np.array((0.09, 0.38, 0.18)) * rng.uniform(0.9, 1.1),
            "texture": 0.02 * smooth_noise(rng, 10),
            "background": 0.12 + 0.02 * smooth_noise(rng, 4),
        }

    @staticmethod
    def _component(image, pose: Pose, part, body: bool) -> None:
        """Pads (body=False) or the component itself (body=True) of one part."""
        _, kind, (x, y), size, extra = part
        at = np.array([x, y], dtype=np.float64)
        tin, lead = (0.70, 0.68, 0.60), (0.88, 0.88, 0.90)
        if kind == "chip":
            w, h = size
            offsets = (np.arange(extra) - (extra - 1) / 2) * (w - 4) / max(extra - 1, 1)
            for dx in offsets:
                for side in (-1, 1):
                    pin = at + (dx, side * (h / 2 + 2))
                    _fill(
                        image,
                        pose(pin + _rect(2.6 if not body else 1.8, 4.5 if not body else 3.5)),
                        lead if body else tin,
                    )
            if body:
                _fill(image, pose(at + _rect(w, h)), (0.07, 0.07, 0.08))
                _disc(image, pose(at + (-w / 2 + 3, -h / 2 + 3))[0], 1.2, (0.35, 0.35, 0.36))
        elif kind == "res":
            axis = np.array((0, 1) if extra else (1, 0), dtype=np.float64)
            if body:
                _fill(image, pose(at + _rect(*((4, 9) if extra else (9, 4)))), (0.12, 0.11, 0.10))
                for end in (-1, 1):
                    _fill(image, pose(at + end * 4.5 * axis + _rect(2, 2) * 1.6), lead)
            else:
                for end in (-1, 1):
                    _fill(image, pose(at + end * 5 * axis + _rect(4, 4.5)), tin)
        else:  # an electrolytic capacitor seen from above
            if body:
                _disc(image, pose(at)[0], size, (0.78, 0.78, 0.80))
                _fill(image, pose(at + (0, -size * 0.6) + _rect(size * 1.4, size * 0.5)), (0.20, 0.22, 0.35))
            else:
                for end in (-1, 1):
                    _fill(image, pose(at + (end * (size + 1), 0) + _rect(3, 3)), tin)

    def draw(self, scene, missing=None):
        pose = scene["pose"]
        albedo = np.repeat(scene["background"][..., None], 3, axis=2).astype(np.float32)
        board = np.zeros((SIZE, SIZE), np.uint8)
        _fill(board, pose(_rect(104, 88)), 1)
        surface = board.astype(bool)
        albedo[surface] = (scene["board"] * (1 + scene["texture"][surface, None])).astype(np.float32)
        for trace in self.TRACES:
            _curve(albedo, pose(np.array(trace, dtype=np.float64)), (0.16, 0.52, 0.25), 2)
        for corner in ((-46, -38), (46, -38), (-46, 38), (46, 38)):
            _disc(albedo, pose(corner)[0], 4.0, (0.72, 0.70, 0.60))
            _disc(albedo, pose(corner)[0], 2.0, (0.04, 0.04, 0.04))
        for part in self.PARTS:
            self._component(albedo, pose, part, body=False)
        for k, part in enumerate(self.PARTS):
            if k != missing:
                self._component(albedo, pose, part, body=True)
        return albedo, surface

    def draw_extra(self, albedo, surface, scene, rng):
        centre = _pick_point(surface, rng)
        kind = int(rng.integers(3))
        if kind == 0:  # a stray resistor at a random angle
            stray = Pose(centre[0], centre[1], rng.uniform(0, np.pi))
            self._component(albedo, stray, ("X", "res", (0, 0), None, False), body=True)
        elif kind == 1:  # a solder blob
            _disc(albedo, centre, rng.uniform(2.0, 3.2), (0.86, 0.86, 0.84))
            _disc(albedo, centre - 0.8, 0.9, (1.0, 1.0, 1.0))
        else:  # a loose copper wire
            _curve(
                albedo,
                _random_curve(rng, centre, rng.uniform(15, 28), rng.uniform(-0.4, 0.4)),
                (0.86, 0.50, 0.24),
                1,
            )


CATEGORIES: dict[str, Category] = {c.name: c for c in (Fabric(), Wood(), Flange(), Pcb())}


# --------------------------------------------------------------------------- rendering


def _lighting(rng: np.random.Generator) -> dict:
    return {
        "gain": rng.uniform(0.88, 1.1),
        "gradient": rng.uniform(-0.12, 0.12, 2),
        "noise": rng.normal(0, rng.uniform(0.008, 0.02), (SIZE, SIZE, 3)).astype(np.float32),
    }


def _finish(albedo: np.ndarray, light: dict) -> np.ndarray:
    """Lighting (gain and a linear gradient) and sensor noise, then 8-bit quantisation."""
    gx, gy = light["gradient"]
    field = light["gain"] * (1 + gx * (_X - SIZE / 2) / (SIZE / 2) + gy * (_Y - SIZE / 2) / (SIZE / 2))
    image = albedo * field[..., None] + light["noise"]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _draw_defect(cat: Category, scene: dict, defect: str, rng: np.random.Generator) -> np.ndarray:
    if defect == "missing_part":
        return cat.draw(scene, missing=int(rng.integers(cat.n_parts)))[0]
    albedo, surface = cat.draw(scene)
    if defect == "scratch":
        draw_scratch(albedo, surface, rng)
    elif defect == "hole":
        draw_hole(albedo, surface, rng)
    elif defect == "stain":
        draw_stain(albedo, surface, rng, cat.stain_palette)
    elif defect == "extra_part":
        cat.draw_extra(albedo, surface, scene, rng)
    else:
        raise ValueError(f"unknown defect '{defect}' for {cat.name}")
    return albedo


def render(
    category: str,
    scene_seed: np.random.SeedSequence,
    defect: str | None = None,
    defect_seed: np.random.SeedSequence | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One image, uint8 (S, S, 3) RGB, and its defect mask (bool (S, S); None without a defect).

    The scene depends only on scene_seed, so render(c, s) is the clean twin of render(c, s, defect).
    """
    cat = CATEGORIES[category]
    scene_rng = np.random.default_rng(scene_seed)
    scene = cat.scene(scene_rng)
    light = _lighting(scene_rng)
    clean = _finish(cat.draw(scene)[0], light)
    if defect is None:
        return clean, None
    defect_rng = np.random.default_rng(defect_seed)
    for _ in range(20):
        image = _finish(_draw_defect(cat, scene, defect, defect_rng), light)
        mask = (image != clean).any(axis=2)
        if mask.sum() >= MIN_DEFECT_PIXELS:
            return image, mask
    raise RuntimeError(f"demo generator: no visible '{defect}' defect for {category}")  # a generator bug
