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

# ... and the smallest training schedule around it (64 px, batch 2, a log line per iteration).
TINY_TRAINING = [
    *TINY_MODEL,
    "data.max_size_train=64",
    "data.num_workers=0",
    "solver.batch_size=2",
    "solver.log_period=1",
    "solver.checkpoint_period=100",
]
