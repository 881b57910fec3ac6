"""resablate's declared sweeps: the repository's `sweeps/` folder as the config group `sweep`, and the `grids` sweeper.

    python -m resablate +sweep=table6            # every run behind R1 Table 6 (sweeps/table6.yaml)

- `search_path.py`: puts `sweeps/` on the search path of resablate's app only (from any working directory, with the
  editable install), exposed as the group `sweep`, so `+sweep=NAME` loads `sweeps/NAME.yaml`.
- `grids_sweeper.py`: `hydra/sweeper=grids`, Hydra's basic sweeper over a union of named grids (R1 Table 6 is ResNets
  at six depths plus highway nets at two: not one product), each job in a folder named after its own overrides.

Hydra imports these modules whenever it scans `hydra_plugins`: they stay light (no torch, no optuna).
"""
