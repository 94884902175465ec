"""Self-validation: the model refuses what it was not made for, cheapest test first.

1. The DICOM header (`header.py`): an object that cannot be a hand radiograph (CT, MR, US, NM,
   RT objects, SEG, SR, ...) is refused before its pixels are decoded.
2. The image's features against the validation images (`methods.py`: nearest neighbours,
   Mahalanobis distance per stratum), with the model's own confidence (class heads) and its
   disagreement (ensemble members, TTA views) where it has them.

`gate.py` fits a threshold on the validation images and travels with the model, into its
exports; `measure.py` measures each method on what the gate was not fitted on.
"""
