"""Subject-level stratified splits: no leakage, balanced age bins, reproducible."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from boneage.config.errors import ConfigError
from boneage.datamodules.splits import SubjectSplit, split_summary
from boneage.tasks import AgeHead


def longitudinal_table(n_subjects: int = 400, seed: int = 0) -> pd.DataFrame:
    """Subjects with 1-4 images each, ages 0-80 (years), like an adult cohort."""
    rng = np.random.default_rng(seed)
    rows = []
    for subject in range(n_subjects):
        age = rng.uniform(0, 80)
        for visit in range(rng.integers(1, 5)):
            rows.append({"image": f"s{subject}_{visit}.png", "subject": f"s{subject}", "age": age + visit})
    return pd.DataFrame(rows)


def test_no_subject_appears_in_two_sets():
    table = longitudinal_table()
    table["set"] = SubjectSplit().assign(table, AgeHead())
    sets_per_subject = table.groupby("subject")["set"].nunique()
    assert (sets_per_subject == 1).all()
    assert set(table["set"]) == {"train", "val", "test"}


def test_fractions_hold_per_age_bin():
    table = longitudinal_table(n_subjects=2000)
    split = SubjectSplit(test_fraction=0.2, val_fraction=0.1, stratum_width=10)
    table["set"] = split.assign(table, AgeHead())
    subjects = table.groupby("subject").agg(age=("age", "mean"), set=("set", "first"))
    shares = pd.crosstab(np.floor(subjects["age"] / 10), subjects["set"], normalize="index")
    assert np.allclose(shares["test"], 0.2, atol=0.02)
    assert np.allclose(shares["val"], 0.1, atol=0.02)


def test_same_seed_same_split_other_seed_other_split():
    table = longitudinal_table()
    first = SubjectSplit(seed=1).assign(table, AgeHead())
    assert first.equals(SubjectSplit(seed=1).assign(table, AgeHead()))
    assert not first.equals(SubjectSplit(seed=2).assign(table, AgeHead()))


def test_summary_counts_images_and_subjects():
    table = longitudinal_table()
    table["set"] = SubjectSplit().assign(table, AgeHead())
    summary = split_summary(table, "age")
    assert sum(s["images"] for s in summary.values()) == len(table)
    assert sum(s["subjects"] for s in summary.values()) == table["subject"].nunique()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"test_fraction": 1.2}, "test_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"test_fraction": 0.6, "val_fraction": 0.5}, "test_fraction + data.split.val_fraction"),
        ({"stratum_width": 0}, "stratum_width"),
    ],
)
def test_bad_fractions_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=re.escape(f"data.split.{key}")):
        SubjectSplit(**kwargs)


def test_a_split_that_leaves_a_set_empty_is_refused():
    table = longitudinal_table(n_subjects=3)
    with pytest.raises(ConfigError, match="no subject in the"):
        SubjectSplit(test_fraction=0.1, val_fraction=0.1, min_subjects_per_bin=1).assign(table, AgeHead())


def test_an_age_bin_too_thin_to_share_out_is_refused_with_the_fix():
    table = longitudinal_table(n_subjects=300)
    table.loc[table["subject"] == "s0", "age"] = 150.0  # the only subject in [150, 160)
    with pytest.raises(ConfigError, match=r"\[150, 160\): 1\). Use wider bins \(data.split.stratum_width"):
        SubjectSplit(stratum_width=10).assign(table, AgeHead())
