"""The 2-process run that the tests of torchrun, of SLURM's tasks and of submitit's 2-task jobs
train: 20 steps (two epochs of the tiny corpus per rank), so each launcher's results.json must
say the same."""

DISTRIBUTED_RUN = ["train.max_steps=20", "train.eval_every=10", "train.log_every=5",
                   "data.max_eval_pairs=20"]
