"""The node's answer as a DICOM TID 1500 Measurement Report (highdicom), in the patient's study.

The tree, under the report's title (Imaging Measurement Report):
- the observation context: the device that observed (boneage, its model and version);
- the procedure reported: XR Bones for age (LOINC 37362-1);
- one Imaging Measurements group, tracked by the source image's UID, with the method and the
  algorithm's identity (model name, version, config hash) and a reference to the source image:
  - NUM XR Bone age (LOINC 85151-9) in months (UCUM `mo`), with the 90% interval's limits as
    its statistical properties;
  - NUM Age (LOINC 30525-0, the chronological age from the header) and NUM bone age minus
    chronological age, both in months, where the header gives an age;
  - CODE Finding: advanced, delayed or within (the chronological age against the interval);
  - CODE Patient sex: the sex the answer used.

An image not assessed gets the same tree without a single number: the finding is "Not
assessed" and a TEXT comment says why. Codes of boneage's own (99BONEAGE) are declared in the
report's Coding Scheme Identification.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from boneage.datamodules.readings import BONE_AGE_LOINC
from boneage.pacs.assessment import Assessment
from boneage.pacs.identity import NodeIdentity, derived_uid

SCHEME = "99BONEAGE"
BONE_AGE = hd.sr.CodedConcept(BONE_AGE_LOINC, "LN", "XR Bone age")
BONES_FOR_AGE = hd.sr.CodedConcept("37362-1", "LN", "XR Bones for age")
AGE = hd.sr.CodedConcept("30525-0", "LN", "Age")
MONTHS = hd.sr.CodedConcept("mo", "UCUM", "month")
PATIENT_SEX = hd.sr.CodedConcept("184100006", "SCT", "Patient sex")
SEXES = {"F": hd.sr.CodedConcept("248152002", "SCT", "Female"), "M": hd.sr.CodedConcept("248153007", "SCT", "Male")}
COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
DIFFERENCE = hd.sr.CodedConcept("difference", SCHEME, "Bone age minus chronological age")
LOWER = hd.sr.CodedConcept("lower-limit", SCHEME, "Lower limit of prediction interval")
UPPER = hd.sr.CodedConcept("upper-limit", SCHEME, "Upper limit of prediction interval")
METHOD = hd.sr.CodedConcept("cnn-regression", SCHEME, "Bone age by a convolutional network (boneage)")
FINDINGS = {
    "advanced": hd.sr.CodedConcept("advanced", SCHEME, "Bone age advanced"),
    "delayed": hd.sr.CodedConcept("delayed", SCHEME, "Bone age delayed"),
    "within": hd.sr.CodedConcept("within", SCHEME, "Bone age within interval"),
    None: hd.sr.CodedConcept("not-assessed", SCHEME, "Not assessed"),
}
SR_SERIES_NUMBER = 9001
STUDY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber")  # fmt: skip


def structured_report(source: Dataset, assessment: Assessment, identity: NodeIdentity) -> Dataset:
    """The Comprehensive SR answering `source` (its header; pixels not needed) in its study, in
    a series of its own. Its UIDs derive from the source's and the model's identity: building it
    again (a retry, a restart) gives the same report, never a second one."""
    uid = source.SOPInstanceUID
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(uid, identity, "tracking"), identifier="bone age"),
        method=METHOD,
        algorithm_id=identity.algorithm(),
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, uid)],
        measurements=_measurements(assessment, identity),
        qualitative_evaluations=_evaluations(assessment),
    )
    if not assessment.assessed:  # the group's last item: why there is no number
        group[0].ContentSequence.append(hd.sr.TextContentItem(COMMENT, assessment.reason, "CONTAINS"))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid(identity.config_hash, identity, "device"), name="boneage",
            manufacturer_name=identity.manufacturer, model_name=identity.model_name,
        ),
    )  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=BONES_FOR_AGE,
        imaging_measurements=[group],
    )
    document = hd.sr.ComprehensiveSR(
        evidence=[with_study_attributes(source)],
        content=report[0],
        series_instance_uid=derived_uid(uid, identity, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid(uid, identity, "sr"),
        instance_number=1,
        manufacturer=identity.manufacturer,
        is_complete=True,
        contributing_equipment=[identity.equipment()],
    )
    document.SeriesDescription = "Bone age (boneage)" if assessment.assessed else "Bone age: not assessed (boneage)"
    document.CodingSchemeIdentificationSequence = [_private_scheme()]
    return document


def with_study_attributes(source: Dataset) -> Dataset:
    """A copy of `source`'s header with every patient and study attribute a derived object
    copies; a modality leaves out the empty ones (they are Type 2), and an empty one is what it
    means."""
    header = Dataset()
    header.update({element.tag: element for element in source if element.tag.group != 0x7FE0})
    for keyword in STUDY_ATTRIBUTES:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def _measurements(assessment: Assessment, identity: NodeIdentity) -> list[hd.sr.Measurement]:
    if not assessment.assessed:
        return []
    algorithm = identity.algorithm()
    interval = None
    if assessment.lower is not None:
        level = f"{round(100 * assessment.level)}%"
        interval = hd.sr.MeasurementProperties(
            measurement_statistical_properties=hd.sr.MeasurementStatisticalProperties(
                values=[_number(LOWER, assessment.lower), _number(UPPER, assessment.upper)],
                description=f"{level} split-conformal prediction interval",
                authority="boneage, fitted on the model's validation subjects",
            )
        )
    found = [hd.sr.Measurement(BONE_AGE, assessment.bone_age, MONTHS, algorithm_id=algorithm, properties=interval)]
    if assessment.chronological_age is not None:
        found.append(hd.sr.Measurement(AGE, assessment.chronological_age, MONTHS))
        found.append(hd.sr.Measurement(DIFFERENCE, assessment.difference, MONTHS, algorithm_id=algorithm))
    return found


def _evaluations(assessment: Assessment) -> list[hd.sr.QualitativeEvaluation]:
    found = []
    if not assessment.assessed or assessment.finding:
        found.append(hd.sr.QualitativeEvaluation(codes.DCM.Finding, FINDINGS[assessment.finding]))
    if assessment.sex in SEXES:
        found.append(hd.sr.QualitativeEvaluation(PATIENT_SEX, SEXES[assessment.sex]))
    return found


def _number(name: hd.sr.CodedConcept, value: float) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(name=name, value=value, unit=MONTHS, relationship_type="HAS PROPERTIES")


def _private_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "boneage codes"
    item.CodingSchemeResponsibleOrganization = "boneage"
    return item


def report_values(document: Dataset) -> dict[str, object]:
    """The numbers and codes of a report this module wrote, read back by their concept names:
    what a test or an archive's reader checks against `predict`."""
    found: dict[str, object] = {}

    def walk(items: Sequence[Dataset]) -> None:
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else None
            if item.ValueType == "NUM":
                found[name] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE":
                found[name] = item.ConceptCodeSequence[0].CodeMeaning
            elif item.ValueType == "TEXT":
                found[name] = item.TextValue
            walk(item.get("ContentSequence", []))

    walk(document.ContentSequence)
    return found
