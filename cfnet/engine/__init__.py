"""Training and evaluation engine: ``cfnet train`` / ``eval`` / ``predict`` and their functions.

    from cfnet.engine.train import train
    from cfnet.engine.evaluate import evaluate
    from cfnet.engine.predict import predict_images
    result = train(cfg, "data/shapes", "runs/tiny", callback=print)
    metrics = evaluate(model, "data/shapes/val", "runs/tiny/eval")

The functions live in the submodules of the same names (``train``, ``evaluate``, ``predict``,
``export``) beside the pieces training is built from (``runtime``, ``solver``); this package
imports none of them, so ``import cfnet.engine`` stays cheap. (Re-exporting ``train`` and
``evaluate`` here would shadow the submodules of those names.)
"""
