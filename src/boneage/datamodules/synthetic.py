"""Built-in demo data: radiograph-like images of hands whose anatomy matures with age.

What changes with skeletal maturity (as on real hand radiographs): bones grow longer and
wider, epiphyses appear at the ends of the phalanges, metacarpals, radius and ulna, grow
to cap their shafts and then fuse (the growth-plate gap closes), and the carpal bones
ossify one after another. Girls mature earlier than boys; every subject has its own
maturity offset, and each subject is imaged at several visits. Hand size, position,
rotation, exposure and noise vary per image, so age must be read from the anatomy.

Beside the age, each image carries two more labels for the other tasks' demos: its
developmental stage (a class read from the anatomy: task=classify) and its acquisition
quality (a score from its blur and noise: task=score); task=multitask learns all three.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from boneage.config.errors import ConfigError
from boneage.datamodules.generated import generate_once
from boneage.datamodules.table import TableSource
from boneage.tasks.base import Head

ADULT_AGE = 17.5  # years at which an average boy is fully mature
FEMALE_ADVANCE = 1.3  # years by which girls mature earlier
RENDER_SCALE = 2  # draw at twice the size, then downsample: anti-aliased edges

# Finger rays from thumb to little finger: base offset across the wrist (hand lengths),
# angle from vertical (degrees), then metacarpal, proximal, middle and distal phalanx
# lengths as fractions of the hand length (the thumb has no middle phalanx).
RAYS = (
    (-0.10, -42.0, 0.17, 0.13, 0.00, 0.10),
    (-0.05, -11.0, 0.29, 0.17, 0.10, 0.07),
    (-0.01, -2.0, 0.28, 0.19, 0.12, 0.07),
    (0.03, 7.0, 0.26, 0.17, 0.11, 0.07),
    (0.07, 16.0, 0.23, 0.14, 0.08, 0.06),
)
# Carpal bones in order of ossification: (dx, dy) from the wrist centre in hand lengths,
# maturity at which the bone appears, and its adult radius in hand lengths.
CARPALS = (
    (0.00, -0.03, 0.02, 0.040),  # capitate
    (0.06, -0.02, 0.05, 0.034),  # hamate
    (0.08, 0.04, 0.20, 0.028),  # triquetrum
    (0.02, 0.05, 0.30, 0.030),  # lunate
    (-0.08, -0.01, 0.42, 0.028),  # trapezium
    (-0.05, -0.05, 0.46, 0.024),  # trapezoid
    (-0.05, 0.05, 0.52, 0.032),  # scaphoid
    (0.11, 0.08, 0.70, 0.018),  # pisiform
)


@dataclass(frozen=True)
class HandAnatomy:
    """Maturity-driven measurements of one hand, independent of how it is imaged."""

    maturity: float  # 0 (newborn) .. 1 (adult skeleton)
    hand_length: float  # pixels at render scale

    @property
    def growth_plate_gap(self) -> float:
        """Gap between epiphysis and shaft, as a fraction of the shaft width; 0 once fused."""
        return 0.45 * (1.0 - _smoothstep(0.70, 0.93, self.maturity))

    def epiphysis_size(self, appears_at: float) -> float:
        """Epiphysis width as a fraction of the shaft width (0 before it ossifies)."""
        if self.maturity < appears_at:
            return 0.0
        return 0.35 + 0.75 * min(1.0, (self.maturity - appears_at) / 0.35)

    def carpal_radius(self, appears_at: float, adult_radius: float) -> float:
        if self.maturity < appears_at:
            return 0.0
        grown = min(1.0, 0.25 + (self.maturity - appears_at) / 0.4)
        return adult_radius * grown * self.hand_length


def maturity_of(age: float, female: bool, offset: float) -> float:
    """Skeletal maturity in [0, 1] of a subject of this age, sex and personal offset (years)."""
    return float(np.clip((age + FEMALE_ADVANCE * female + offset) / ADULT_AGE, 0.0, 1.0))


# Developmental stages by skeletal maturity (the classification demo's classes).
STAGES = ((0.3, "infant"), (0.6, "child"), (0.85, "adolescent"), (1.01, "mature"))
# Columns of the demo table that each target role reads (the roles of data.source.columns).
DEMO_COLUMNS = {"age": "age_years", "label": "stage", "stage": "stage", "score": "quality", "quality": "quality"}


def stage_of(maturity: float) -> str:
    return next(name for upper, name in STAGES if maturity < upper)


def render_hand(
    age: float, female: bool, offset: float, size: int, rng: np.random.Generator, exposure: float = 1.0
) -> tuple[np.ndarray, float]:
    """One grayscale uint8 radiograph-like image (size x size) of a hand at this age, and the
    quality of its acquisition (0-100: less blur and noise is better); `exposure` scales the
    plate's brightness (a site's own equipment)."""
    canvas = size * RENDER_SCALE
    maturity = maturity_of(age, female, offset)
    growth = 0.62 + 0.38 * _smoothstep(0.0, 1.0, maturity)  # children's hands are smaller
    hand_length = canvas * 0.72 * growth * rng.uniform(0.9, 1.1)
    anatomy = HandAnatomy(maturity=maturity, hand_length=hand_length)
    density = 0.55 + 0.3 * maturity  # bones mineralise with age

    tissue = np.zeros((canvas, canvas), np.float32)
    bone = np.zeros((canvas, canvas), np.float32)
    wrist = np.array([canvas * rng.uniform(0.45, 0.55), canvas * rng.uniform(0.64, 0.72)])
    tilt = rng.uniform(-12.0, 12.0)

    _draw_forearm(bone, tissue, anatomy, wrist, tilt, density)
    _draw_palm(tissue, hand_length, wrist, tilt)
    for dx, dy, appears_at, adult_radius in CARPALS:
        radius = anatomy.carpal_radius(appears_at, adult_radius)
        if radius > 0:
            centre = wrist + _rotate(np.array([dx, dy]) * hand_length, tilt)
            _ellipse(bone, centre, (radius, radius * 0.85), rng.uniform(0, 180), density)
    for ray in RAYS:
        _draw_ray(bone, tissue, anatomy, wrist, tilt, ray, density, rng)

    image = 0.06 + 0.22 * cv2.GaussianBlur(tissue, (0, 0), canvas * 0.012) + bone
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return _expose(image, rng, exposure)


def _draw_forearm(bone, tissue, anatomy, wrist, tilt, density) -> None:
    """Radius and ulna below the wrist, each with a distal epiphysis."""
    length = anatomy.hand_length
    axis = _direction(180.0 + tilt)
    for side, width, appears_at in ((-0.055, 0.075, 0.05), (0.06, 0.05, 0.38)):
        end = wrist + _rotate(np.array([side, 0.12]) * length, tilt)
        start = end + axis * length * 0.6
        _bone(bone, start, end, width * length, density)
        _epiphysis(bone, anatomy, end, -axis, width * length, appears_at, density)
    _capsule(tissue, wrist + axis * length * 0.1, wrist + axis * length, 0.2 * length)


def _draw_palm(tissue, hand_length, wrist, tilt) -> None:
    """The soft tissue of the palm: a rounded quadrilateral over the metacarpals."""
    corners = np.array([[-0.15, 0.02], [0.12, 0.02], [0.14, -0.3], [-0.1, -0.34]])
    points = [_point(wrist + _rotate(corner * hand_length, tilt)) for corner in corners]
    cv2.fillConvexPoly(tissue, np.array(points, np.int32), 1.0, cv2.LINE_AA)


def _draw_ray(bone, tissue, anatomy, wrist, tilt, ray, density, rng) -> None:
    """One metacarpal and its phalanges, each with an epiphysis at its proximal end."""
    base_offset, angle, *lengths = ray
    direction = _direction(angle + tilt + rng.uniform(-4, 4))
    hand_length = anatomy.hand_length
    is_thumb = angle < -30
    start = wrist + _rotate(np.array([base_offset, -0.06]), tilt) * hand_length
    finger_start = start
    for index, fraction in enumerate(lengths):
        if fraction == 0:
            continue
        width = hand_length * (0.05 if index == 0 else 0.045 - 0.006 * index)
        end = start + direction * fraction * hand_length
        gap = anatomy.growth_plate_gap * width
        shaft_start = start + direction * gap if index > 0 else start
        _bone(bone, shaft_start, end - direction * width * 0.15, width, density)
        metacarpal_epiphysis_at_head = index == 0 and not is_thumb
        if metacarpal_epiphysis_at_head:
            _epiphysis(bone, anatomy, end, direction, width, 0.18 + 0.02 * index, density)
        elif index > 0 or is_thumb:
            _epiphysis(bone, anatomy, start, -direction, width, 0.12 + 0.05 * index, density)
        start = end + direction * width * 0.25  # joint space
    _capsule(tissue, finger_start, start, hand_length * 0.075)


def _epiphysis(bone, anatomy, joint_end, outward, shaft_width, appears_at, density) -> None:
    """A cap of bone beyond the shaft's end, separated by the growth-plate gap."""
    size = anatomy.epiphysis_size(appears_at)
    if size == 0:
        return
    gap = anatomy.growth_plate_gap * shaft_width
    half_height = shaft_width * 0.22 * min(size, 1.0)
    centre = joint_end + outward * (gap + half_height)
    angle = np.degrees(np.arctan2(outward[1], outward[0])) + 90
    _ellipse(bone, centre, (shaft_width * 0.5 * size, half_height), angle, density)


def _bone(canvas, start, end, width, density) -> None:
    """A shaft: a bright cortex around a darker medullary canal."""
    _capsule(canvas, start, end, width, density)
    _capsule(canvas, start, end, width * 0.45, -0.25 * density)


def _capsule(canvas, start, end, width, value=1.0) -> None:
    mask = np.zeros_like(canvas)
    cv2.line(mask, _point(start), _point(end), 1.0, max(1, round(width)), cv2.LINE_AA)
    np.add(canvas, value * mask, out=canvas)


def _ellipse(canvas, centre, axes, angle, value) -> None:
    mask = np.zeros_like(canvas)
    axes = (max(1, round(axes[0])), max(1, round(axes[1])))
    cv2.ellipse(mask, _point(centre), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    np.maximum(canvas, value * mask, out=canvas)


def _expose(image: np.ndarray, rng: np.random.Generator, exposure: float) -> tuple[np.ndarray, float]:
    """Acquisition: exposure, contrast, a heel-effect gradient, blur and quantum noise; the
    quality score falls linearly with the blur and the noise (each half of it)."""
    height = image.shape[0]
    gradient = np.linspace(1.0 - rng.uniform(0, 0.15), 1.0, height, dtype=np.float32)[:, None]
    image = image * gradient * (rng.uniform(0.8, 1.15) * exposure) + rng.uniform(-0.04, 0.06)
    blur = rng.uniform(0.4, 0.9)
    image = cv2.GaussianBlur(image, (0, 0), blur)
    noise = rng.uniform(0.02, 0.05)
    image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    quality = 100 * (1 - 0.5 * (blur - 0.4) / 0.5 - 0.5 * (noise - 0.02) / 0.03)
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), round(quality, 2)


def _smoothstep(low: float, high: float, x: float) -> float:
    t = float(np.clip((x - low) / (high - low), 0.0, 1.0))
    return t * t * (3 - 2 * t)


def _direction(degrees_from_up: float) -> np.ndarray:
    radians = np.radians(degrees_from_up)
    return np.array([np.sin(radians), -np.cos(radians)])


def _rotate(vector: np.ndarray, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def _point(xy: np.ndarray) -> tuple[int, int]:
    return round(float(xy[0])), round(float(xy[1]))


@dataclass
class SyntheticHands:
    """Generates the demo data set once into `root`, then serves it like a user's table.

    The folder name carries every generation setting, so changing one makes a new data set
    and never mixes two. Generation writes to a temporary folder that is renamed into place:
    several processes may start it at once and each sees a complete data set.
    """

    root: str
    n_subjects: int = 1000
    visits_per_subject: tuple[int, int] = (2, 4)
    image_size: int = 128
    min_age: float = 1.0
    max_age: float = 18.0
    seed: int = 0
    # Another site: its population matures this many years ahead of the demo's (girls, boys), and
    # its plates are this much brighter; the defaults are the demo's own site.
    advance_years: tuple[float, float] = (0.0, 0.0)
    exposure: float = 1.0

    @property
    def folder(self) -> Path:
        low, high = self.visits_per_subject
        name = (
            f"hands2_n{self.n_subjects}_v{low}-{high}_px{self.image_size}"
            f"_age{self.min_age:g}-{self.max_age:g}_seed{self.seed}"
        )
        girls, boys = self.advance_years
        if (girls, boys, self.exposure) != (0.0, 0.0, 1.0):
            name += f"_site{girls:g}-{boys:g}x{self.exposure:g}"
        return Path(self.root).expanduser() / name

    age_unit = "years"

    @property
    def path(self) -> str:
        return self.table().path

    def table(self, targets: Sequence[str] = ("age",)) -> TableSource:
        unknown = set(targets) - set(DEMO_COLUMNS)
        if unknown:
            raise ConfigError(
                f"The demo data has no target for the head(s) {sorted(unknown)}; its targets are "
                f"{sorted(DEMO_COLUMNS)}. Name the heads after them, or train on your table (data=table)."
            )
        return TableSource(
            path=str(self.folder / "labels.csv"),
            image_dir=str(self.folder / "images"),
            columns={"image": "image", "subject": "subject", "sex": "sex"} | {t: DEMO_COLUMNS[t] for t in targets},
            age_unit="years",
        )

    def prepare(self) -> None:
        generate_once(self.folder, self._generate_into, "the demo data set")

    def load(self, heads: Mapping[str, Head]) -> pd.DataFrame:
        self.prepare()
        return self.table(list(heads)).load(heads)

    def _generate_into(self, folder: Path) -> None:
        rng = np.random.default_rng(self.seed)
        (folder / "images").mkdir()
        rows = []
        low, high = self.visits_per_subject
        for subject_index in range(self.n_subjects):
            subject = f"S{subject_index:05d}"
            female = bool(rng.random() < 0.5)
            offset = float(rng.normal(0.0, 0.6)) + self.advance_years[0 if female else 1]
            visits = int(rng.integers(low, high + 1))
            age = rng.uniform(self.min_age, self.max_age - (visits - 1))
            for visit in range(visits):
                image, quality = render_hand(age, female, offset, self.image_size, rng, self.exposure)
                name = f"{subject}_v{visit + 1}.png"
                cv2.imwrite(str(folder / "images" / name), image)
                stage = stage_of(maturity_of(age, female, offset))
                rows.append((name, subject, "F" if female else "M", round(age, 2), stage, quality))
                age = min(age + rng.uniform(0.5, 1.5), self.max_age)
        table = pd.DataFrame(rows, columns=["image", "subject", "sex", "age_years", "stage", "quality"])
        table.to_csv(folder / "labels.csv", index=False)
