"""`python -m boneage.pacs`: the DICOM node that answers radiographs in the patient's study."""
