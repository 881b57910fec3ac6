#!/usr/bin/env bash
# A real two-node SLURM cluster on this machine, for trying SLURM sweeps and for the `cluster` tests:
#
#   scripts/local_cluster.sh start     # munge, slurmctld and two slurmd (nodes n1, n2), all in a scratch folder
#   eval "$(scripts/local_cluster.sh env)"   # SLURM_CONF for sbatch/srun/sinfo in this shell
#   python -m resablate -m hydra/launcher=slurm hydra.launcher.partition=local hydra.launcher.gpus_per_node=0 ...
#   scripts/local_cluster.sh stop      # stops exactly what start started, removes the folder
#
# Needs Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge; .ci/run installs them) and root (the daemons
# run as root, munged as the munge user). It installs nothing. Nodes: 1 CPU each, no GPU, no cgroups, no accounting
# (use `scontrol show job` / `squeue`, not sacct). Folder: $RESABLATE_CLUSTER_DIR (default /tmp/resablate-cluster).
set -euo pipefail

DIR="${RESABLATE_CLUSTER_DIR:-/tmp/resablate-cluster}"
CONF="$DIR/slurm.conf"
HOST="$(hostname -s)"

need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "local_cluster: $tool not found: apt-get install -y slurm-wlm munge" >&2; exit 2; }
    done
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

write_conf() {
    local ctld="$1" node1="$2" node2="$3" cpus="$4"
    cat > "$CONF" <<EOF
ClusterName=resablate
SlurmctldHost=$HOST
SlurmctldPort=$ctld
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.%n.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=n1 NodeHostname=$HOST Port=$node1 CPUs=$cpus RealMemory=4000 State=UNKNOWN
NodeName=n2 NodeHostname=$HOST Port=$node2 CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=local Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

start() {
    need munged slurmctld slurmd sinfo sbatch
    if [ -f "$CONF" ] && status >/dev/null 2>&1; then echo "local_cluster: already running ($DIR)"; return 0; fi
    [ "$(id -u)" = 0 ] || { echo "local_cluster: start needs root (the SLURM daemons run as root)" >&2; exit 2; }
    rm -rf "$DIR"
    mkdir -p "$DIR/state" "$DIR/spool/n1" "$DIR/spool/n2" "$DIR/munge/key"
    chmod 755 "$DIR" "$DIR/munge"
    # munge: a key of our own, its socket in our folder, run as the munge user (it refuses root). The socket's folder
    # must be open to all; the key's must not.
    head -c 1024 /dev/urandom > "$DIR/munge/key/munge.key"
    chown -R munge:munge "$DIR/munge"
    chmod 700 "$DIR/munge/key"
    chmod 400 "$DIR/munge/key/munge.key"
    runuser -u munge -- munged --key-file="$DIR/munge/key/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
    # One CPU per node where the machine has two or more; the nodes share the machine's cores.
    local cpus=1
    write_conf "$(free_port)" "$(free_port)" "$(free_port)" "$cpus"
    SLURM_CONF="$CONF" slurmctld -f "$CONF"
    SLURM_CONF="$CONF" slurmd -f "$CONF" -N n1
    SLURM_CONF="$CONF" slurmd -f "$CONF" -N n2
    for _ in $(seq 1 120); do
        if [ "$(SLURM_CONF="$CONF" sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle')" = 2 ]; then
            echo "local_cluster: nodes n1 n2 idle ($DIR); export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.5
    done
    echo "local_cluster: the nodes did not come up within 60 s; logs in $DIR" >&2
    SLURM_CONF="$CONF" sinfo -N >&2 || true
    stop
    exit 1
}

kill_pidfile() {
    local file="$1"
    [ -f "$file" ] || return 0
    local pid
    pid="$(cat "$file")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

stop() {
    [ -d "$DIR" ] || { echo "local_cluster: not running"; return 0; }
    if [ -f "$CONF" ]; then SLURM_CONF="$CONF" scancel --full --quiet -u root 2>/dev/null || true; fi
    kill_pidfile "$DIR/slurmd.n1.pid"
    kill_pidfile "$DIR/slurmd.n2.pid"
    kill_pidfile "$DIR/slurmctld.pid"
    kill_pidfile "$DIR/munge/munged.pid"
    rm -rf "$DIR"
    echo "local_cluster: stopped"
}

status() {
    [ -f "$CONF" ] || { echo "local_cluster: not running"; return 1; }
    SLURM_CONF="$CONF" sinfo -N -o '%N %t %c'
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
