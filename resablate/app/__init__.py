"""The Hydra + Lightning application: `python -m resablate`. Nothing outside `app/` imports it, except the benchmarks,
which build their Trainer through `app.trainer` so that what they measure is what training runs."""
