"""The smallest ``shapes-tiny`` variant: tests that need an architecture, not a good one, use it."""

TINY_MODEL = [
    "model.backbone.fpn_channels=32",
    "model.semantic.channels=32",
    "model.instance.channels=32",
    "model.instance.mask_feature_channels=32",
    "model.correlation.hidden_channels=16",
    "model.input.min_size_test=64",
    "model.input.max_size_test=64",
]
