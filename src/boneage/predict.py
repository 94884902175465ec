"""`python -m boneage.predict run=<run> input=<folder or table>`: ages for images never seen.

A table's other columns (subject, sex, ...) are copied to the output next to each prediction.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from boneage.cli import hydra_command
from boneage.datamodules.images import IMAGE_SUFFIXES
from boneage.errors import DataError
from boneage.evaluation.ensemble import load_members, plain, predict_members
from boneage.resolvers import register_resolvers


def images_to_predict(source: str, image_column: str = "image", image_dir: str | None = None) -> pd.DataFrame:
    """One row per image: every image file under a folder, or the rows of a table."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"input={source}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder.")
        return pd.DataFrame({"image": [str(p) for p in files]})
    if not path.is_file():
        raise DataError(f"input={source}: no such folder or table.")
    table = pd.read_excel(path) if path.suffix.lower() in (".xlsx", ".xls") else pd.read_csv(path)
    if image_column not in table:
        raise DataError(f"input={source} has no column {image_column!r} (image_column); it has {list(table.columns)}.")
    root = Path(image_dir).expanduser() if image_dir else path.parent
    missing = [name for name in table[image_column] if not (root / str(name)).is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) of {source} not found under {root}, e.g. {missing[:5]}.")
    return table.assign(image=[str(root / str(name)) for name in table[image_column]])


def predict(cfg: DictConfig) -> Path:
    members = load_members(cfg.run, plain(cfg.ensemble), cfg.sweep)
    rows = images_to_predict(cfg.input, cfg.image_column, cfg.image_dir)
    ages, _ = predict_members(members, rows, plain(cfg.tta), plain(cfg.weights))
    output = Path(cfg.output)
    rows.assign(predicted_age=ages, unit=members[0].unit).to_csv(output, index=False)
    print(f"{len(rows)} predictions ({members[0].unit}) written to {output}")
    return output


register_resolvers()


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
