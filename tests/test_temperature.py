"""Temperature scaling of class probabilities: fitted on one set of images, it must make another
set's probabilities honest (ECE falls) without changing any image's predicted class."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from boneage.config.errors import ConfigError
from boneage.evaluation.temperature import calibration_errors, fit_temperature, tempered
from boneage.evaluation.trust import check_interval_settings, checked_calibrations
from boneage.tasks import ClassifyTask


def miscalibrated(images: int, sharpen: float, seed: int, classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A model's probabilities softmax(sharpen x logits), where the true classes are drawn from
    softmax(logits): sharpen > 1 is overconfident, < 1 underconfident, and 1/sharpen the temperature
    that makes it calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (images, classes))
    calibrated = softmax(logits, axis=1)
    truth = (calibrated.cumsum(axis=1) < rng.random((images, 1))).sum(axis=1)
    return softmax(sharpen * logits, axis=1), truth


@pytest.mark.parametrize("sharpen", [3.0, 0.5], ids=["overconfident", "underconfident"])
def test_a_temperature_fitted_on_validation_makes_held_out_probabilities_honest_and_keeps_every_class(sharpen):
    validation, validation_truth = miscalibrated(4000, sharpen, seed=0)
    test, test_truth = miscalibrated(4000, sharpen, seed=1)
    temperature = fit_temperature(validation, validation_truth)
    assert temperature == pytest.approx(sharpen, rel=0.15)  # the logits' sharpening, undone

    after = tempered(test, temperature)
    before_errors, after_errors = calibration_errors(test, test_truth), calibration_errors(after, test_truth)
    assert before_errors["ece"] > 0.05
    assert after_errors["ece"] < before_errors["ece"] / 3
    assert after_errors["adaptive_ece"] < before_errors["adaptive_ece"] / 3
    assert (after.argmax(axis=1) == test.argmax(axis=1)).all()  # accuracy cannot change
    np.testing.assert_allclose(after.sum(axis=1), 1)


def test_ece_and_adaptive_ece_are_the_confidence_accuracy_gaps_counted_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    truth = np.array([0, 1, 0, 0])
    errors = calibration_errors(probabilities, truth)
    # equal-width bins: {0.9, 0.9} right half the time, {0.6, 0.6} always right: (0.4 + 0.4) / 2
    assert errors["ece"] == pytest.approx(0.4)
    # equal-count bins of one image each: |0.9 - 1|, |0.9 - 0|, |0.6 - 1|, |0.6 - 1| over 4
    assert errors["adaptive_ece"] == pytest.approx(0.45)


def test_a_calibration_a_class_task_cannot_take_is_refused_by_name():
    with pytest.raises(
        ConfigError, match=r"calibrate='linear': no head of this ClassifyTask run takes it.*temperature"
    ):
        checked_calibrations(ClassifyTask(), "linear")


def test_the_keys_of_bone_ages_intervals_are_refused_by_name_for_another_task():
    with pytest.raises(ConfigError, match=r"intervals_by='sex' does not apply to this ClassifyTask run's intervals"):
        check_interval_settings(ClassifyTask(), "sex", None)
