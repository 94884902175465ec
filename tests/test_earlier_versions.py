"""A checkpoint and exports written by the boneage before the head protocol (tests/fixtures/
earlier_version: a tiny untrained network, an age run and a multi-task one) still load and give
the answers they gave then: normalised with the ImageNet statistics they were trained with,
with their calibration and interval or set tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from boneage.evaluation.answers import Answers
from boneage.evaluation.ensemble import load_members, predict_members
from boneage.evaluation.inference import load_run
from boneage.evaluation.trust import TaskTrust
from boneage.modules.pixels import IMAGENET

EARLIER = Path(__file__).parent / "fixtures" / "earlier_version"


def probe_rows() -> pd.DataFrame:
    return pd.DataFrame({"image": [str(path) for path in sorted((EARLIER / "probe").iterdir())]})


def answered_then(name: str) -> dict[str, list]:
    return json.loads((EARLIER / f"answers_{name}.json").read_text())


def test_a_checkpoint_of_an_earlier_version_answers_as_it_did_with_imagenet_statistics():
    run = load_run(EARLIER / "run_age")
    assert run.module.hparams["pixel_stats"] == IMAGENET  # its backbone's own would be 0.5: not what it learnt on
    assert run.task.heads["age"].unit == "years"  # from its run's table, as the checkpoint holds none
    answers = predict_members([run], probe_rows(), "none").combined
    np.testing.assert_allclose(answers, answered_then("age")["run"], atol=1e-5)


@pytest.mark.parametrize("name", ["age", "multitask"])
def test_an_export_of_an_earlier_version_answers_as_it_did_with_its_tables(name):
    members = load_members(str(EARLIER / f"export_{name}"), None, None)
    rows = probe_rows()
    np.testing.assert_allclose(predict_members(members, rows, "none").combined, answered_then(name)["export"],
                               atol=1e-5)  # fmt: skip
    task = members[0].task
    trust = TaskTrust.from_dict(members[0].trust, task)
    assert all(trust.has_table(head) for head in task.heads)  # every head's residuals or set scores kept
    written = Answers(members, trust).table(rows, [0.9])
    for head_name, head in task.heads.items():
        prefix = task.column_prefix(head_name)
        if head.answers_classes:
            assert written[f"{prefix}set_90"].notna().all()
        else:
            assert (written[f"{prefix}lower_90"] <= written[f"predicted_{head_name}"]).all()
            assert (written[f"predicted_{head_name}"] <= written[f"{prefix}upper_90"]).all()
    if "age" in task.heads:
        assert task.heads["age"].unit == "years"
