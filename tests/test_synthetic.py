"""The demo data set: deterministic, longitudinal, and anatomy that matures with age."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from boneage.datamodules.synthetic import SyntheticHands, maturity_of, render_hand
from tests.helpers import AGE_HEADS


def test_same_seed_same_data_set(tmp_path):
    first = SyntheticHands(root=str(tmp_path / "a"), n_subjects=5, image_size=48).load(AGE_HEADS)
    second = SyntheticHands(root=str(tmp_path / "b"), n_subjects=5, image_size=48).load(AGE_HEADS)
    assert first.drop(columns="image").equals(second.drop(columns="image"))
    for a, b in zip(first["image"], second["image"], strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_several_images_per_subject_with_ages_that_advance(tmp_path):
    table = SyntheticHands(root=str(tmp_path), n_subjects=20, image_size=48).load(AGE_HEADS)
    visits = table.groupby("subject")["age"]
    assert visits.size().between(2, 4).all()
    assert visits.apply(lambda ages: ages.is_monotonic_increasing).all()
    assert set(table["sex"]) == {"F", "M"}


def test_girls_mature_earlier_than_boys():
    assert maturity_of(10.0, female=True, offset=0.0) > maturity_of(10.0, female=False, offset=0.0)


def test_older_hands_show_more_bone():
    """Bones lengthen, widen and carpals ossify: the bright area grows with age."""

    def bone_area(age: float) -> float:
        images = [render_hand(age, False, 0.0, 96, np.random.default_rng(seed))[0] for seed in range(8)]
        return float(np.mean([(image > 150).mean() for image in images]))

    assert bone_area(3.0) < bone_area(9.0) < bone_area(16.0)


def test_generation_is_reused_not_repeated(tmp_path):
    hands = SyntheticHands(root=str(tmp_path), n_subjects=3, image_size=32)
    hands.prepare()
    stamp = (hands.folder / "labels.csv").stat().st_mtime_ns
    hands.prepare()
    assert (hands.folder / "labels.csv").stat().st_mtime_ns == stamp
