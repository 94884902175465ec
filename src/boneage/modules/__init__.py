"""Models: timm backbones (backbones.py), the image-model LightningModule (model.py), losses,
lr schedules."""
