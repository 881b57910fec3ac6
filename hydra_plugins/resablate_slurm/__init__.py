"""`hydra/launcher=slurm`: hydra-submitit-launcher's SLURM launcher, waiting for every job of a batch and seeing
the jobs that end without returning.

- `slurm_launcher.py`: the launcher (conf/hydra/launcher/slurm.yaml names it), and the watcher of its jobs' states.

Hydra imports these modules whenever it scans `hydra_plugins`: they stay light (submitit only once a sweep launches).
"""
