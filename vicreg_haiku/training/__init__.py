"""Training: the loss, optimizers and schedules, the pretraining step, the
loop every phase shares, checkpoints, device meshes. Imports models/, data/
and utils/."""
