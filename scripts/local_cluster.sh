#!/usr/bin/env bash
# A real two-node SLURM cluster and a PostgreSQL server on this machine, for trying SLURM sweeps and a shared Optuna
# study, and for the `cluster` tests:
#
#   scripts/local_cluster.sh start     # munge, slurmctld, two slurmd (nodes n1, n2) and PostgreSQL, in a scratch folder
#   eval "$(scripts/local_cluster.sh env)"   # SLURM_CONF (for sbatch/srun/sinfo) and RESABLATE_POSTGRES_URL
#   python -m resablate -m hydra/launcher=slurm hydra.launcher.partition=local hydra.launcher.gpus_per_node=0 ...
#   python -m resablate -m hydra/sweeper=optuna hydra.sweeper.storage="$RESABLATE_POSTGRES_URL" ...
#   scripts/local_cluster.sh stop      # stops exactly what start started, removes the folder
#
# `start slurm` or `start postgres` starts one of the two; `start mysql` a MariaDB server (Debian's mariadb-server;
# not part of `all`), database `optuna`, role `resablate` ($RESABLATE_MYSQL_PASSWORD, default random). SLURM needs Debian's slurm-wlm and munge and root (the
# daemons run as root, munged as the munge user); PostgreSQL needs Debian's postgresql (run as the postgres user when
# started by root). It installs nothing (.ci/run installs the packages). Nodes: 1 CPU each, no GPU, no cgroups, no
# accounting (use `scontrol show job` / `squeue`, not sacct). PostgreSQL: 127.0.0.1 only, at a free port, role
# `resablate` with the password $RESABLATE_POSTGRES_PASSWORD (default: a random one), database `optuna`.
# Folder: $RESABLATE_CLUSTER_DIR (default /tmp/resablate-cluster).
set -euo pipefail

DIR="${RESABLATE_CLUSTER_DIR:-/tmp/resablate-cluster}"
CONF="$DIR/slurm.conf"
HOST="$(hostname -s)"

need() {
    local package="$1"
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "local_cluster: $tool not found: apt-get install -y $package" >&2; exit 2; }
    done
}

# Free ports, held until the daemons given them have bound them. `hold_ports N` starts a helper that binds N distinct
# ports (SO_REUSEADDR, never listening) and writes them to $PORTS; while it holds them the kernel gives them to no
# other process asking for a free port. Each daemon binds its port beside the helper's socket (slurmctld, slurmd,
# PostgreSQL and MariaDB set SO_REUSEADDR, which Linux allows beside a socket that does not listen); `release_ports`
# ends the helper once they listen.
PORTS=""
HOLDER=""
hold_ports() {
    PORTS="$DIR/.ports.$$"
    rm -f "$PORTS"
    python3 - "$1" "$PORTS" >/dev/null 2>&1 <<'PY' &
import os, socket, sys, time
count, path = int(sys.argv[1]), sys.argv[2]
held = []
for _ in range(count):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    held.append(s)
with open(path + ".tmp", "w") as f:
    f.write(" ".join(str(s.getsockname()[1]) for s in held) + "\n")
os.rename(path + ".tmp", path)
while os.path.exists(path):
    time.sleep(0.05)
PY
    HOLDER=$!
    for _ in $(seq 1 200); do [ -f "$PORTS" ] && return 0; kill -0 "$HOLDER" 2>/dev/null || break; sleep 0.05; done
    echo "local_cluster: could not hold $1 free ports" >&2
    exit 1
}
release_ports() {
    [ -n "$HOLDER" ] || return 0
    rm -f "$PORTS"
    wait "$HOLDER" 2>/dev/null || true
    HOLDER=""
}
trap release_ports EXIT  # a start that fails part way lets its helper go too

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

slurm_running() { [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; }

start_slurm() {
    need "slurm-wlm munge" munged slurmctld slurmd sinfo sbatch
    if slurm_running; then echo "local_cluster: SLURM already running ($DIR)"; return 0; fi
    [ "$(id -u)" = 0 ] || { echo "local_cluster: SLURM needs root (its daemons run as root)" >&2; exit 2; }
    rm -rf "$DIR/state" "$DIR/spool" "$DIR/munge"
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
    hold_ports 3
    local ports
    read -r -a ports < "$PORTS"
    write_conf "${ports[0]}" "${ports[1]}" "${ports[2]}" "$cpus"
    SLURM_CONF="$CONF" slurmctld -f "$CONF"
    SLURM_CONF="$CONF" slurmd -f "$CONF" -N n1
    SLURM_CONF="$CONF" slurmd -f "$CONF" -N n2
    for _ in $(seq 1 120); do
        if [ "$(SLURM_CONF="$CONF" sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle')" = 2 ]; then
            release_ports  # slurmctld and both slurmd listen on theirs
            echo "local_cluster: nodes n1 n2 idle ($DIR); export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.5
    done
    release_ports
    echo "local_cluster: the nodes did not come up within 60 s; logs in $DIR" >&2
    SLURM_CONF="$CONF" sinfo -N >&2 || true
    stop
    exit 1
}

PG="$DIR/postgres"

# PostgreSQL's server tools: in RESABLATE_PG_BIN when it is set (and nowhere else), else on the PATH. Debian installs
# them under /usr/lib/postgresql/<version>/bin, outside the PATH; .ci/run puts that folder on it. Only the PATH counts,
# so that taking PostgreSQL off the PATH is a machine without it (the tests then skip, or fail under RESABLATE_CI=1).
pg_bin() {
    if [ -n "${RESABLATE_PG_BIN+set}" ]; then
        if [ -x "$RESABLATE_PG_BIN/$1" ]; then echo "$RESABLATE_PG_BIN/$1"; fi
    else
        command -v "$1" || true
    fi
}

pg_missing() {
    local debian
    debian="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    if [ -n "${RESABLATE_PG_BIN+set}" ]; then
        echo "local_cluster: PostgreSQL not found: no initdb/pg_ctl in RESABLATE_PG_BIN=$RESABLATE_PG_BIN" >&2
    elif [ -n "$debian" ]; then
        echo "local_cluster: PostgreSQL not found on the PATH: it is installed in $debian; export PATH=\"$debian:\$PATH\"" >&2
    else
        echo "local_cluster: PostgreSQL not found: apt-get install -y postgresql, then put /usr/lib/postgresql/<version>/bin on the PATH" >&2
    fi
    exit 2
}

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

postgres_running() { [ -f "$PG/data/postmaster.pid" ] && as_postgres "$(pg_bin pg_ctl)" -D "$PG/data" status >/dev/null 2>&1; }

start_postgres() {
    local initdb pg_ctl port password
    initdb="$(pg_bin initdb)"
    pg_ctl="$(pg_bin pg_ctl)"
    [ -n "$initdb" ] && [ -n "$pg_ctl" ] || pg_missing
    if postgres_running; then echo "local_cluster: PostgreSQL already running ($(cut -d@ -f2 "$PG/url"))"; return 0; fi
    rm -rf "$PG"
    mkdir -p "$PG"
    chmod 755 "$DIR"
    password="${RESABLATE_POSTGRES_PASSWORD:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 24)}"
    printf '%s\n' "$password" > "$PG/pw"
    [ "$(id -u)" = 0 ] && chown -R postgres "$PG"
    as_postgres "$initdb" -D "$PG/data" -U resablate --pwfile="$PG/pw" -A scram-sha-256 --no-sync >"$PG/initdb.log" 2>&1 \
        || { cat "$PG/initdb.log" >&2; rm -rf "$PG"; exit 1; }
    rm -f "$PG/pw"
    hold_ports 1
    port="$(cat "$PORTS")"
    if ! as_postgres "$pg_ctl" -D "$PG/data" -w -t 60 -l "$PG/log" \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $PG -c fsync=off" start >/dev/null; then
        release_ports
        echo "local_cluster: PostgreSQL did not start; its log: $PG/log" >&2
        cat "$PG/log" >&2 || true
        exit 1
    fi
    release_ports  # pg_ctl -w returns once the server accepts connections
    PGPASSWORD="$password" "$(pg_bin createdb)" -h 127.0.0.1 -p "$port" -U resablate optuna
    (umask 077; printf 'postgresql://resablate:%s@127.0.0.1:%s/optuna\n' "$password" "$port" > "$PG/url")
    echo "local_cluster: PostgreSQL on 127.0.0.1:$port, database optuna; its URL: $PG/url"
}

MY="$DIR/mysql"

mysql_running() { [ -f "$MY/mysqld.pid" ] && kill -0 "$(cat "$MY/mysqld.pid")" 2>/dev/null; }

start_mysql() {
    need mariadb-server mariadb-install-db mariadbd mariadb
    if mysql_running; then echo "local_cluster: MariaDB already running ($(cut -d@ -f2 "$MY/url"))"; return 0; fi
    local user port password
    user="$(id -un)"
    [ "$user" = root ] && user=mysql  # mariadbd refuses root; as root it switches to --user itself
    rm -rf "$MY"
    mkdir -p "$MY"
    chmod 755 "$DIR"
    [ "$(id -u)" = 0 ] && chown "$user" "$MY"
    mariadb-install-db --no-defaults --user="$user" --datadir="$MY/data" --auth-root-authentication-method=socket \
        --skip-test-db >"$MY/install.log" 2>&1 || { cat "$MY/install.log" >&2; rm -rf "$MY"; exit 1; }
    hold_ports 1
    port="$(cat "$PORTS")"
    mariadbd --no-defaults --user="$user" --datadir="$MY/data" --socket="$MY/mysqld.sock" --port="$port" \
        --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$MY/mysqld.pid" --log-error="$MY/log" \
        --innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    # The client logs in over the socket as the account of this OS user (root, or the user running the script).
    local as=root
    [ "$(id -u)" = 0 ] || as="$(id -un)"
    for _ in $(seq 1 120); do
        mariadb --no-defaults -S "$MY/mysqld.sock" -u "$as" -e "SELECT 1" >/dev/null 2>&1 && break
        sleep 0.5
    done
    release_ports  # it answered on its socket, so it has bound its port too
    password="${RESABLATE_MYSQL_PASSWORD:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 24)}"
    if ! mariadb --no-defaults -S "$MY/mysqld.sock" -u "$as" -e "CREATE USER 'resablate'@'127.0.0.1' IDENTIFIED BY
            '$password'; GRANT ALL PRIVILEGES ON *.* TO 'resablate'@'127.0.0.1'; CREATE DATABASE optuna;"; then
        echo "local_cluster: MariaDB did not start; its log: $MY/log" >&2
        cat "$MY/log" >&2 || true
        exit 1
    fi
    (umask 077; printf 'mysql+pymysql://resablate:%s@127.0.0.1:%s/optuna\n' "$password" "$port" > "$MY/url")
    echo "local_cluster: MariaDB on 127.0.0.1:$port, database optuna; its URL: $MY/url"
}

start() {
    mkdir -p "$DIR"
    case "${1:-all}" in
        all) start_slurm; start_postgres ;;
        slurm) start_slurm ;;
        postgres) start_postgres ;;
        mysql) start_mysql ;;
        *) echo "usage: $0 start [all|slurm|postgres|mysql]" >&2; exit 2 ;;
    esac
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
    if [ -f "$PG/data/postmaster.pid" ]; then
        as_postgres "$(pg_bin pg_ctl)" -D "$PG/data" -m fast -w -t 60 stop >/dev/null 2>&1 || kill_pidfile "$PG/data/postmaster.pid"
    fi
    kill_pidfile "$MY/mysqld.pid"
    rm -rf "$DIR"
    echo "local_cluster: stopped"
}

status() {
    local any=1
    if slurm_running; then SLURM_CONF="$CONF" sinfo -N -o '%N %t %c'; any=0; fi
    if postgres_running; then echo "PostgreSQL: 127.0.0.1:$(cut -d: -f4 "$PG/url" | cut -d/ -f1)"; any=0; fi
    if mysql_running; then echo "MariaDB: 127.0.0.1:$(cut -d: -f4 "$MY/url" | cut -d/ -f1)"; any=0; fi
    [ "$any" = 0 ] || echo "local_cluster: not running"
    return "$any"
}

env_lines() {
    if [ -f "$CONF" ]; then echo "export SLURM_CONF=$CONF"; fi
    if [ -f "$PG/url" ]; then echo "export RESABLATE_POSTGRES_URL='$(cat "$PG/url")'"; fi
    if [ -f "$MY/url" ]; then echo "export RESABLATE_MYSQL_URL='$(cat "$MY/url")'"; fi
}

case "${1:-}" in
    start) start "${2:-all}" ;;
    stop) stop ;;
    status) status ;;
    env) env_lines ;;
    *) echo "usage: $0 start [all|slurm|postgres|mysql]|stop|status|env" >&2; exit 2 ;;
esac
