#!/usr/bin/env bash
# Every benchmark table on a GPU, in one sitting: bash benchmarks/gpu_tables.sh OUT_DIR [TABLE ...]
#
# Each table is written to OUT_DIR/<table>.md as it is printed and has its own time limit (seconds,
# override with e.g. MD_S=900), so one slow table cannot starve the rest. Naming tables (md models
# sw_energy_forces train_epochs study full_study) runs only those; by default all but full_study (the
# full-size SW study: 13 trainings, kept in OUT_DIR/full_study, resumable). MD_SIZES and MD_POTENTIALS
# narrow the MD table. Needs mlpkit's dependencies
# with a CUDA jaxlib (PYTHON names the interpreter, default python3); JAX picks the GPU by itself.
set -u
out=$(mkdir -p "${1:?usage: bash benchmarks/gpu_tables.sh OUT_DIR}" && cd "$1" && pwd)
python=${PYTHON:-python3}
shift
tables=" ${*:-md models sw_energy_forces train_epochs study} "
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"

table() {  # name, limit in s, command...
    local name=$1 limit=$2
    shift 2
    [[ $tables == *" $name "* ]] || return 0
    echo "## $name ($*)" | tee "$out/$name.md"
    (cd "$here" && timeout "$limit" "$@") 2>&1 | grep -v "^WARNING\|Explicitly requested dtype\|warnings.warn" | tee -a "$out/$name.md"
    echo "exit ${PIPESTATUS[0]}" | tee -a "$out/$name.md"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/machine.md"
"$python" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" \
    | tee -a "$out/machine.md"
table md "${MD_S:-280}" "$python" md.py --sizes ${MD_SIZES:-64 512 4096 32768} --repeats 5 --steps 20 \
    ${MD_POTENTIALS:+--potentials $MD_POTENTIALS}
table models "${MODELS_S:-80}" "$python" models.py --repeats 10
table sw_energy_forces "${SW_S:-40}" "$python" sw_energy_forces.py --sizes 64 512 4096 32768 --repeats 20
table train_epochs "${TRAIN_S:-40}" "$python" -m mlpkit train --data sw:Si --ensemble 3 --epochs 8 --out "$out/train" --no-progress
[[ $tables == *" train_epochs "* ]] && "$python" - "$out/train/history.csv" <<'EOF' | tee -a "$out/train_epochs.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
elapsed = [float(r["elapsed_s"]) for r in rows]
steady = [b - a for a, b in zip(elapsed[1:], elapsed[2:])]
print(f"first epoch (compiles) {elapsed[0]:.1f} s; later epochs median {sorted(steady)[len(steady) // 2]:.2f} s, min {min(steady):.2f}, max {max(steady):.2f}")
EOF
table study "${STUDY_S:-130}" "$python" study.py --repeats 1
table full_study "${FULL_STUDY_S:-1800}" "$python" study.py --full --repeats 1 --out "$out/full_study"
