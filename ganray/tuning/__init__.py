"""Ray Tune sweeps over the training config, with FID as the objective."""
