"""Training, evaluation and export of fervideo's emotion classifier.

`training.config.load_recipe` reads a YAML recipe, `training.loop.train_recipe` runs it,
`training.evaluate.evaluate_checkpoint` and `training.export.export_model` work on its artifact.
"""
