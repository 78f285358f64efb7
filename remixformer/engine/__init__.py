"""Run infrastructure shared by supervised training and DINO pretraining: the Lightning trainer and
its configuration, run directories (resumability, file logging, config dump, seeding), training-state
checkpoints without pickling, per-epoch metrics, and the distributed helpers."""
