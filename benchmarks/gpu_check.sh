#!/usr/bin/env bash
# The GPU check in one call (benchmarks/gpu_check.py says what each stage checks and its thresholds).
#
#   bash benchmarks/gpu_check.sh prepare    # here, with the package registry: what a lent GPU machine lacks, into
#                                           # .gpu_carry/ (about 45 MiB: wheels for Python 3.12, Fashion-MNIST)
#   bash benchmarks/gpu_check.sh            # on the lent machine (carry .gpu_carry), or anywhere: results under $OUT
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh   # the dry run on the CPU, tiny sizes (automatic without CUDA)
#
# The lent machines run python 3.12 with torch and pytorch-lightning preinstalled but no hydra-core, omegaconf,
# antlr4, optuna, submitit or wandb, and reach no registry: `prepare` downloads the wheels the check needs (never
# torch) for that Python, and the run installs from them (`--no-index`) only what the machine lacks. W&B is off
# (logger=csv); the Optuna and SLURM paths are not checked there.
# Budget: GPU_CHECK_BUDGET_S (default 450 s, inside the 8 minutes of one call); the check stops starting stages
# when less is left than the next one needs.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu_carry
NEEDS=(hydra-core omegaconf hydra-joblib-launcher joblib PyYAML rich markdown-it-py mdurl pygments tabulate pandas
       packaging)

if [ "${1:-}" = prepare ]; then
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
    pinned=()  # Hydra at the versions this environment runs (the tests passed with them); the rest the newest
    for name in "${NEEDS[@]}"; do
        case "$name" in hydra-core|omegaconf|hydra-joblib-launcher) ;; *) pinned+=("$name"); continue ;; esac
        version=$(python -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
        pinned+=("$name${version:+==$version}")
    done
    python -m pip download -q --dest "$CARRY/wheels" --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --implementation cp --no-deps "${pinned[@]}"
    # omegaconf pins antlr4 4.9.3, published as a source archive only: built here into a pure-Python wheel
    python -m pip wheel -q --no-deps --wheel-dir "$CARRY/wheels" antlr4-python3-runtime==4.9.3
    cp /usr/share/datasets/fashion-mnist/*.gz "$CARRY/fashion-mnist/"
    du -sh "$CARRY"
    exit 0
fi

OUT="${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}"
if [ -d "$CARRY/wheels" ]; then
    missing=()  # module:distributions, installed only where the module does not import
    for pair in hydra:hydra-core omegaconf:omegaconf antlr4:antlr4-python3-runtime \
            hydra_plugins.hydra_joblib_launcher:hydra-joblib-launcher joblib:joblib yaml:PyYAML \
            rich:rich,markdown-it-py,mdurl,pygments tabulate:tabulate pandas:pandas packaging:packaging; do
        dists=${pair#*:}
        python -c "import ${pair%%:*}" 2>/dev/null || missing+=(${dists//,/ })
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "[gpu_check] installing from $CARRY/wheels: ${missing[*]}"
        python -m pip install -q --no-index --no-deps --find-links "$CARRY/wheels" "${missing[@]}" \
            >"$OUT/pip.txt" 2>&1 || { echo "[gpu_check] pip install from $CARRY failed: $OUT/pip.txt"; exit 1; }
    fi
    [ -d "$CARRY/fashion-mnist" ] && export GPU_CHECK_FASHION_ROOT="$PWD/$CARRY/fashion-mnist"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # resablate from this checkout, installed or not
python benchmarks/gpu_check.py --out "$OUT" --budget-s "${GPU_CHECK_BUDGET_S:-450}"
