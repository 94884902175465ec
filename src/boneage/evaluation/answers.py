"""What predict writes and serve answers for each image, head by head: the head's answer (its
value, calibrated and within its range, with its unit; or its class with the probabilities,
tempered), its conformal interval or prediction set at each level, and what the head adds
(the age head: its difference from the chronological age). A task of one head answers with
that head's columns and keys as they are; with several, each head's are under its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from boneage.evaluation.ensemble import MemberPredictions, load_members, plain, predict_members
from boneage.evaluation.prediction_sets import PredictionSets
from boneage.evaluation.trust import TaskTrust, spreads_of, trust_for
from boneage.selfcheck.fitting import evidence_of, gate_of
from boneage.selfcheck.gate import Gate, Verdicts


@dataclass
class Answers:
    """The members' answers, made trustworthy by `trust` (fitted on their validation subjects)."""

    members: Sequence[Any]
    trust: TaskTrust
    tta: Sequence[str] | str = "none"
    weights: Sequence[float] | None = None
    gate: Gate | None = None  # self-validation: images unlike the validation images are not assessed
    reject: bool = True  # replies withhold the answers of images the gate refuses (false: answer and flag)

    @property
    def task(self) -> Any:
        return self.members[0].task

    @property
    def inputs(self) -> list[str]:
        """Table columns needed beside the image: what some member's network takes (sex...), and
        what a head's interval groups read (intervals_by=sex), and the sex a site's correction reads."""
        needed = {name for member in self.members for name in member.inputs}
        for name, trust in self.trust.heads.items():
            if column := self.task.heads[name].group_columns.get(trust.by):
                needed.add(column)
        if self.trust.site is not None:
            needed.add("sex")
        return sorted(needed)

    def predict(self, rows: pd.DataFrame) -> tuple[MemberPredictions, dict[str, np.ndarray]]:
        """The members' predictions of `rows`, and each head's answers."""
        predicted = predict_members(self.members, rows, self.tta, self.weights)
        return predicted, self.trust.applied(self.task, predicted.combined, rows)

    def verdicts(self, predicted: MemberPredictions) -> Verdicts | None:
        """The gate's verdict on each image `predicted` answers (None without a gate)."""
        return None if self.gate is None else self.gate.verdicts(evidence_of(self.members, predicted))

    def bounds(
        self, rows: pd.DataFrame, predicted: MemberPredictions, answers: dict[str, np.ndarray], levels: Sequence[float]
    ) -> dict[float, dict[str, Any]]:
        """Per level, each head's interval bounds (value heads) or set membership matrix (class
        heads), for the heads that have a table to answer with. The spreads that scale intervals
        (one more network pass for a mean-variance model) are taken once for all levels."""
        found: dict[float, dict[str, Any]] = {level: {} for level in levels}
        spreads: dict[str, np.ndarray] | None = None
        for name, head in self.task.heads.items():
            trust = self.trust.heads[name]
            if not trust.has_table:
                continue
            if not head.answers_classes and trust.scale and spreads is None:
                spreads = spreads_of(self.members, rows, predicted, trust.scale)
            for level in levels:
                found[level][name] = trust.sets.sets(answers[name], level) if head.answers_classes else trust.bounds(
                    head, answers[name][:, 0], rows, level, None if spreads is None else spreads[name])  # fmt: skip
        return found

    def table(self, rows: pd.DataFrame, levels: Sequence[float]) -> pd.DataFrame:
        """predict's columns for `rows`: the rows as given, then each head's answer, unit and
        interval or set at each level, then what each head adds."""
        predicted, answers = self.predict(rows)
        at_level = self.bounds(rows, predicted, answers, levels)
        written = rows.reset_index(drop=True)
        for name, head in self.task.heads.items():
            prefix = self.task.column_prefix(name)
            columns = head.prediction_columns(answers[name])
            if head.unit:
                columns[f"{prefix}unit"] = head.unit
            for level, found in at_level.items():
                percent = round(100 * level)
                if name not in found:
                    continue
                if head.answers_classes:
                    columns[f"{prefix}set_{percent}"] = PredictionSets.named(found[name], head.classes)
                else:
                    columns[f"{prefix}lower_{percent}"], columns[f"{prefix}upper_{percent}"] = found[name]
            written = pd.concat([written, columns], axis=1)
        for name, head in self.task.heads.items():
            head.answer_extras(written, self.task.column_prefix(name), levels)
        if (verdicts := self.verdicts(predicted)) is not None:  # the answers stay, for research
            written["assessed"], written["ood_score"] = ~verdicts.refused, verdicts.scores
            written["not_assessed"] = [verdicts.reason(row) if refused else "" for row, refused in
                                       enumerate(verdicts.refused)]  # fmt: skip
        return written.set_axis(rows.index)

    def replies(self, rows: pd.DataFrame, level: float | None) -> list[dict[str, Any]]:
        """serve's answer for each image of `rows`: per head its answer and, at `level`, its
        interval or prediction set."""
        predicted, answers = self.predict(rows)
        found = self.bounds(rows, predicted, answers, [level])[level] if level else {}
        replies: list[dict[str, Any]] = [{} for _ in range(len(rows))]
        single = len(self.task.heads) == 1
        for name, head in self.task.heads.items():
            for row, reply in enumerate(replies):
                answer = head.answer(answers[name][row])
                if name in found and head.answers_classes:
                    members = [head.classes[i] for i in np.flatnonzero(found[name][row])]
                    answer["set"] = {"level": level, "classes": members}
                elif name in found:
                    lower, upper = found[name]
                    answer["interval"] = {"level": level, "lower": float(lower[row]), "upper": float(upper[row])}
                if single:
                    reply.update(answer)
                else:
                    unit = {} if head.answers_classes else {"unit": head.unit}
                    reply.setdefault("heads", {})[name] = {"kind": head.kind, **answer, **unit}
        if (verdicts := self.verdicts(predicted)) is not None:
            replies = [self._checked(reply, verdicts, row) for row, reply in enumerate(replies)]
        return replies

    def _checked(self, reply: dict[str, Any], verdicts: Verdicts, row: int) -> dict[str, Any]:
        """A reply with the gate's verdict; a refused image's answers withheld (unless reject=false)."""
        refused = bool(verdicts.refused[row])
        check = {"method": verdicts.method, "score": float(verdicts.scores[row]), "threshold": verdicts.threshold}
        verdict = {"assessed": not refused, "self_validation": check}
        if refused:
            verdict["reason"] = verdicts.reason(row)
            if self.reject:
                return verdict | {"withheld": True}
        return reply | verdict


def answers_for(settings: Any, intervals: bool, reject: bool = True) -> Answers:
    """The answers of a command's model (its keys run, ensemble, sweep, tta, weights, the trust
    keys and the self-validation's): what predict, serve and pacs answer with alike."""
    members = load_members(settings.run, plain(settings.ensemble), settings.sweep)
    tta, weights = plain(settings.tta), plain(settings.weights)
    gate = gate_of(members, tta, weights, settings.ood_method, settings.ood_quantile)
    return Answers(members, trust_for(members, settings, tta, weights, intervals), tta, weights, gate, reject)
