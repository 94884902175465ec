"""Who answers: the algorithm's identity as IHE AI Results asks it to travel with every result
(Contributing Equipment, and the measurement's Algorithm Identification), and the UIDs derived
from it, which make a result built twice the same object."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
from pydicom.sr.codedict import codes

import boneage

MANUFACTURER = "boneage"


@dataclass(frozen=True)
class NodeIdentity:
    model_name: str  # the runs (or export) that answer, as GET /model names them
    version: str  # the checkpoints (or export files) that answer
    config_hash: str  # a hash of the members' config hashes: a changed config shows
    manufacturer: str = MANUFACTURER

    @classmethod
    def of(cls, members: Sequence[Any]) -> NodeIdentity:
        identities = [member.identity() for member in members]
        hashes = "+".join(identity["config_hash"] for identity in identities)
        return cls(
            model_name=" + ".join(identity["run"] for identity in identities)[:64],
            version=" + ".join(identity["checkpoint"] for identity in identities)[:64],
            config_hash=hashlib.sha256(hashes.encode()).hexdigest()[:12] if len(identities) > 1 else hashes,
        )

    def algorithm(self) -> hd.sr.AlgorithmIdentification:
        return hd.sr.AlgorithmIdentification(
            name=self.model_name, version=self.version, parameters=[f"config_hash={self.config_hash}"]
        )

    def equipment(self) -> hd.ContributingEquipment:
        return hd.ContributingEquipment(
            manufacturer=self.manufacturer,
            purpose_of_reference=codes.DCM.ProcessingEquipment,
            manufacturer_model_name=self.model_name,
            software_versions=[f"boneage {boneage.__version__}", self.version],
            device_serial_number=self.config_hash,
            contribution_description="Bone age estimated from the radiograph by a trained network",
        )


def derived_uid(source_uid: str, identity: NodeIdentity, kind: str) -> str:
    """A UID fixed by the source object, the model and what is derived (`kind`): the same inputs
    always give the same UID. A 2.25 UID (ISO/IEC 9834-8) whose 128 bits are a hash of them;
    pydicom's generate_uid draws a random one whenever its prefix is 2.25."""
    text = "\n".join([source_uid, identity.config_hash, identity.version, kind])
    return f"2.25.{int(hashlib.sha256(text.encode()).hexdigest()[:32], 16)}"
