"""`python -m resablate [overrides] [-m]`: parse, run Hydra, and turn errors into one line and an exit status (the
table of outcomes and statuses: resablate/app/outcomes.py; this is the one module that exits).

A sweep (-m) checks what it can of every job first (sweep.SweepCheck: a bad value, a missing data set: one line, no
job started). Then a job that fails, is refused or diverges does not stop the others: each says so in one line, and
the sweep ends with one line counting its jobs by how they ended, and exits with the worst (outcomes.sweep_code). A
signal stops the sweep with 128 + N, after the same line. A SLURM job that ended without returning (scancel, a lost
node) fails the sweep once the others are done; its folder says how far it got (`interrupted` after a scancel), and a
job that never started is counted as "did not run". The same command runs what is left.
"""

from __future__ import annotations

import atexit
import errno
import gc
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from resablate.app import checks, naming, schema, sweep
from resablate.app.outcomes import EXIT_CODES, SIGNAL, Refused, refusal
from resablate.builder import ConfigError
from resablate.paths import CONF_DIR
from resablate.records import RunFolder, RunFolderBusy

SWEEPER_PARAMS = "hydra.sweeper.params."
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)  # the disk, not the code: one line, exit 1
EXIT_HANDLER: list = []  # skip_collecting_at_exit, once registered
EXISTED: set[Path] = set()  # what of the run folder (and the folders above it) was there before Hydra ran

schema.register()  # before Hydra composes: conf/config.yaml starts from the schema and names folders by resolvers
naming.register()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig):
    from resablate.app.train import train  # torch and Lightning: only once Hydra has a job to run

    fast_exit()
    quiet_third_parties()  # again in the job's own process: a side-by-side or SLURM job does not inherit the filters
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return sweep.run_job(cfg, train)
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    run = RunFolder(HydraConfig.get().runtime.output_dir)
    try:
        value, status = train(cfg)
    except (ConfigError, RunFolderBusy, MisconfigurationException) as err:  # the last: pl.Trainer refused an option
        run.remove_hydra_files(existed=EXISTED, digest=naming.identity(cfg)[0])
        refuse(refusal(err))
    except OSError as err:
        if err.errno not in STORAGE_ERRORS:
            raise
        last = run.last_checkpoint()
        resume = (f"{last[0]} (step {last[1]}) is intact: the same command resumes from it" if last
                  else "no checkpoint was written")
        print(f"resablate: error: {err.strerror} ({err.filename or run.path}): the run stopped, status failed; "
              f"{resume}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODES["failed"])
    if EXIT_CODES.get(status):  # diverged: the summary and the console line say where; a script or a scheduler sees it
        sys.exit(EXIT_CODES[status])
    return value


def refuse(message: str) -> NoReturn:
    """The one line a user sees for bad input or environment, and `refused`'s exit status."""
    say_refused(message)
    sys.exit(EXIT_CODES["refused"])


def say_refused(message: str) -> None:
    print(f"resablate: error: {message}", file=sys.stderr, flush=True)


def sweeper_params(args: list[str]) -> list[str]:
    """`hydra.sweeper.params.K=<sweep>` -> `++hydra.sweeper.params.K='<sweep>'`, and a dotted key
    `hydra.sweeper.params.recipe.lr=<value>` -> `++hydra.sweeper.params={recipe.lr:'<value>'}` (one key of params, as
    a YAML `params:` block writes it; Hydra would nest it under `recipe`); every other argument unchanged.

    Hydra refuses a sweep on any `hydra.*` key in a multirun ("Sweeping over Hydra's configuration is not supported"),
    so hydra-optuna-sweeper users had to write `"+hydra.sweeper.params.depth='choice(8,14,20)'"`. A sweeper param is a
    sweep in text form, so it is stored as its text, which the Optuna sweeper and Hydra's basic sweeper both read.
    `++` adds the key or replaces it, as any command-line override replaces a config value. Done here, on our own
    command line, so that no other Hydra app sees it."""
    if not any(SWEEPER_PARAMS in a for a in args):
        return list(args)
    parser, out = OverridesParser.create(), []
    for arg in args:
        try:
            (override,) = parser.parse_overrides([arg]) if "=" in arg and not arg.startswith("-") else (None,)
        except HydraException:
            override = None  # Hydra reports the parse error itself, with its own message
        if (override is None or override.package is not None or override.is_delete()
                or not override.key_or_group.startswith(SWEEPER_PARAMS)):
            out.append(arg)
            continue
        param = override.key_or_group[len(SWEEPER_PARAMS):]
        text = QuotedString(text=override.get_value_string(), quote=Quote.single).with_quotes()
        if "." in param:  # `recipe.lr`: one key of params, as in YAML, not params.recipe.lr
            out.append(f"++{SWEEPER_PARAMS.rstrip('.')}={{{param}:{text}}}")
        elif override.is_sweep_override():
            out.append(f"++{override.key_or_group}={text}")
        else:
            out.append(arg)
    return out


PASSWORD_ENV = "RESABLATE_STORAGE_PASSWORD"


def hide_storage_password(args: list[str]) -> list[str]:
    """`hydra.sweeper.storage=postgresql://user:PW@host/db` -> the same URL with `${oc.env:RESABLATE_STORAGE_PASSWORD}`
    for PW, and PW in that variable of this process (its jobs inherit it). Hydra prints the overrides and saves them,
    with the sweeper's config, in every job folder; the interpolation is resolved only when the sweeper opens the
    storage, so the password is in no file and no line printed."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        scheme, found, rest = value.strip("'\"").partition("://")
        netloc, slash, path = rest.partition("/")
        creds, _, host = netloc.rpartition("@")
        if sep and key.lstrip("+") == "hydra.sweeper.storage" and found and ":" in creds and "${" not in creds:
            user, _, password = creds.partition(":")
            os.environ[PASSWORD_ENV] = password
            arg = f"{key}='{scheme}://{user}:${{oc.env:{PASSWORD_ENV}}}@{host}{slash}{path}'"
        out.append(arg)
    return out


def runs_a_sweep(args: list[str]) -> bool:
    """`-m`, `hydra.mode=MULTIRUN`, or `+sweep=<file>` (every file in sweeps/ declares `hydra.mode: MULTIRUN`): the
    command runs a sweep, whose jobs record their outcomes for its closing line and its exit status."""
    if {"-m", "--multirun"} & set(args):
        return True
    keys = {a.split("=", 1)[0].lstrip("+~"): a.split("=", 1)[1].strip("'\"") for a in args if "=" in a}
    return keys.get("hydra.mode", "MULTIRUN" if naming.SWEEP_GROUP in keys else "RUN").upper() == "MULTIRUN"


def check_characters(args: list[str]) -> None:
    """Characters Hydra's override grammar or a UTF-8 file cannot take, refused in one line that says what to write.
    A byte that is not UTF-8 (Python hands it over as a lone surrogate) would end in an encoding error when the value
    is logged or saved; a character outside ASCII outside quotes ends in Hydra's lexer error. Quoted, any UTF-8
    folder name works (`hydra.run.dir='/data/Müller'`)."""
    parser = OverridesParser.create()
    for arg in args:
        undecodable = [c for c in arg if 0xDC80 <= ord(c) <= 0xDCFF]
        if undecodable:
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            raise ConfigError(f"{shown}: byte 0x{ord(undecodable[0]) - 0xDC00:02x} is not UTF-8, and resablate keeps "
                              "every value in UTF-8 files (the run's config, summary.json, W&B): give the path under "
                              "a UTF-8 name (rename it, or link it: ln -s)")
        key, sep, value = arg.partition("=")
        if not sep or arg.isascii() or arg.startswith("-"):
            continue
        try:
            parser.parse_overrides([arg])
        except HydraException:
            quoted = f"{key}='{value}'"
            try:
                parser.parse_overrides([quoted])
            except HydraException:
                continue  # not a matter of quotes: Hydra reports it with its position
            raise ConfigError(f"{arg}: Hydra's override grammar takes characters outside ASCII only inside quotes; "
                              f"write {quoted} (in a shell: \"{quoted}\")") from None


HYDRA_ONLY = ("-sc", "--shell-completion", "-h", "--help", "--hydra-help", "-i", "--info")  # Hydra answers, no job


FOLDER_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


def spellings(args: list[str]) -> list[str]:
    """`sweep=NAME` -> `+sweep=NAME`: the sweep files are an optional group (no default to override), which Hydra
    spells with `+`; both spellings run sweeps/NAME.yaml. `+hydra.run.dir=` and `+hydra.sweep.dir=` -> without `+`:
    Hydra's `+` adds a key that is not there, and the folders always are."""
    out = []
    for arg in args:
        if arg.startswith(f"{naming.SWEEP_GROUP}="):
            arg = f"+{arg}"
        elif arg.split("=", 1)[0] in (f"+{key}" for key in FOLDER_KEYS):
            arg = arg[1:]
        out.append(arg)
    return out


def quiet_third_parties() -> None:
    """Known third-party console lines that tell a resablate user nothing, silenced at their source; Lightning's INFO
    lines are silenced by logger level in conf/hydra/job_logging/resablate.yaml. Real warnings still show."""
    # Lightning sees `srun` on PATH and suggests running under it: resablate's SLURM jobs go through submitit
    # (hydra/launcher=slurm), which calls srun itself; a login node or a test machine with SLURM installed is no job.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    # Lightning 2.6's own pytree helper uses torch's deprecated LeafSpec check on every batch transfer: theirs to fix,
    # twice per run with a site-packages path, nothing the user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # Lightning warns when an epoch has fewer batches than log_every_n_steps (a small data.train_size); its loggers and
    # resablate's metrics.csv count steps across epochs, so no row is missed: advice that does not apply here.
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging")
    # W&B prints four lines per run (offline mode, `wandb online`, where it saves, `wandb leet`) and a warning about a
    # setting Lightning passes; resablate says once where W&B writes and in which mode (app/tracking.py). A user who
    # wants W&B's own lines sets WANDB_SILENT=false.
    os.environ.setdefault("WANDB_SILENT", "true")


def skip_collecting_at_exit() -> None:
    """The process's exit without the cyclic garbage collector: torch, Lightning and their imports leave about 450,000
    objects, and the collections that run while the interpreter tears its modules down took about a second of every
    command's time (1.05 s against 0.2 s on a 2-core Intel Xeon with AVX-512 and AMX, measured after `import
    pytorch_lightning`). Registered as the command starts (a side-by-side worker's, as its first job starts), so it
    runs after every exit handler registered later (W&B's, Lightning's) and they finish with the collector on; every
    file resablate writes is closed before it runs. Objects are still freed as their last reference goes; only
    reference cycles left at the exit go uncollected, which Python does not promise to collect at exit anyway."""
    gc.disable()
    gc.freeze()


def fast_exit() -> None:
    """skip_collecting_at_exit, registered once per process: the command's, and a side-by-side worker's at its first
    job (tests call cli() in their own process)."""
    if not EXIT_HANDLER:
        EXIT_HANDLER.append(atexit.register(skip_collecting_at_exit))


def check_config(args: list[str], multirun: bool) -> Path | None:
    """The command's config composed and checked before Hydra's app composes it (checks.compose: unknown keys and
    options; checks.check_output_dir: a run folder that cannot be made). Returns the run folder (the sweep folder of a
    sweep) where it is known before the job runs. A config of the user's own (`--config-name`, `--config-dir`) is
    left to Hydra."""
    from hydra._internal.utils import get_args_parser

    try:
        parsed, _ = get_args_parser().parse_known_args(args)
    except SystemExit:
        return None  # Hydra's parser answers it with its usage line
    if parsed.config_name or parsed.config_path or parsed.config_dir:
        return None
    cfg = checks.compose(parsed.overrides, multirun=multirun)
    return None if cfg is None else checks.check_output_dir(cfg, multirun=multirun)


def cli() -> None:
    """Unknown keys and options, and an output folder that cannot be made, are refused before Hydra's app runs, in one
    line naming the value; then the Hydra app runs, and a sweep ends with its closing line. Hydra's own flags (shell
    completion, help, info) go straight to Hydra."""
    fast_exit()
    quiet_third_parties()
    if set(HYDRA_ONLY) & set(sys.argv[1:]):
        main()
        return
    sys.argv[1:] = hide_storage_password(sweeper_params(spellings(sys.argv[1:])))
    # `-m` anywhere, as users type it (`shortcut=projection -m depth=34`): Hydra's parser takes the overrides only as
    # one run of words and would answer with its usage text.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv[1:] = [*flags, *(a for a in sys.argv[1:] if a not in flags)]
    multirun = runs_a_sweep(sys.argv[1:])
    try:
        check_characters(sys.argv[1:])
        run_dir = check_config(sys.argv[1:], multirun)
    except ConfigError as err:
        refuse(str(err))
    EXISTED.clear()
    sweep.SWEEP.clear()
    if not multirun:
        EXISTED.update(RunFolder(run_dir or Path("outputs", "<named once composed>")).existing())
        try:
            main()
        except Refused as refusal:
            refuse(refusal.message)
        return
    token = f"{os.getpid()}-{time.time_ns()}"
    # Every job sees it, whichever launcher runs it; among the overrides (argparse takes them in one run of words).
    first = next((i for i, a in enumerate(sys.argv[1:], 1) if "=" in a and not a.startswith("-")), len(sys.argv))
    sys.argv.insert(first, f"++hydra.job.env_set.{sweep.TOKEN_ENV}={token}")
    code = 0
    try:
        main()
    except SystemExit as exit_:
        if isinstance(exit_, Refused):
            say_refused(exit_.message)  # the sweep's closing line follows
        code = exit_.code if isinstance(exit_.code, int) else EXIT_CODES["failed"]
    except KeyboardInterrupt:
        code = SIGNAL + signal.SIGINT
    finally:
        code = sweep.close(token, code)
    sys.exit(code)
