#!/usr/bin/env bash
# Portcullis benchmark: Portcullis vs OpenSSH sshd (internal-sftp, chroot) and
# vsftpd, on loopback, same files, same user, same ciphers, alternating runs.
# Usage: bash bench/run.sh        (as root: it installs packages and adds a user)
# Env: BENCH_SIZE_MIB (256), BENCH_RUNS (5), BENCH_SMALL_FILES (2000),
#      BENCH_LOGINS (50), BENCH_CONCURRENT (50), BENCH_CONCURRENT_MIB (20),
#      BENCH_IDLE_SESSIONS (1000; 0 skips the memory measure),
#      BENCH_CASES (space-separated subset of case names),
#      BENCH_SSH2_FLOOR (async|sync: bench/ssh2-floor.mjs instead of Portcullis, SFTP cases only).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${BENCH_SIZE_MIB:-256}
RUNS=${BENCH_RUNS:-5}
SMALL_FILES=${BENCH_SMALL_FILES:-2000}
LOGINS=${BENCH_LOGINS:-50}
CONCURRENT=${BENCH_CONCURRENT:-50}
CONCURRENT_MIB=${BENCH_CONCURRENT_MIB:-20}
IDLE_SESSIONS=${BENCH_IDLE_SESSIONS:-1000}
CASES=${BENCH_CASES:-"sftp_get_aes128gcm sftp_put_aes128gcm sftp_get_chacha20 sftp_put_chacha20 sftp_small_files sftp_logins sftp_concurrent_downloads ftp_get ftp_put ftps_get ftps_put"}
BUSER=benchuser
BPASS=${BENCH_PASSWORD:-Bench-pw-$RANDOM$RANDOM}
SSH_PORT_PEER=${BENCH_SSHD_PORT:-22022}
FTP_PORT_PEER=${BENCH_VSFTPD_PORT:-22021}
SSH_PORT_PC=${BENCH_PC_SFTP_PORT:-23022}
FTP_PORT_PC=${BENCH_PC_FTP_PORT:-23021}
CIPHERS="aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"

[ "$(id -u)" = 0 ] || { echo "bench/run.sh must run as root (it starts sshd/vsftpd and adds a user)" >&2; exit 1; }
if [ -n "${BENCH_SSH2_FLOOR:-}" ]; then
  case $BENCH_SSH2_FLOOR in async|sync) ;; *) echo "BENCH_SSH2_FLOOR must be async or sync" >&2; exit 2;; esac
  case " $CASES " in *" ftp"*) echo "BENCH_SSH2_FLOOR serves SFTP only: choose SFTP cases with BENCH_CASES" >&2; exit 2;; esac
  IDLE_SESSIONS=0 # the memory measure is of Portcullis
fi

# --- dependencies -----------------------------------------------------------
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
command -v curl >/dev/null || need+=(curl)
command -v sftp >/dev/null || need+=(openssh-client)
command -v sshpass >/dev/null || need+=(sshpass)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
[ -f "$REPO/dist/src/cli/main.js" ] || { echo "dist/ missing: run npm run build first" >&2; exit 1; }

# --- bench user ---------------------------------------------------------------
id "$BUSER" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/bash "$BUSER"
echo "$BUSER:$BPASS" | chpasswd
export SSHPASS=$BPASS

# --- work dirs (the chroot path must be root-owned, not group/world-writable,
#     in every component: so not under /tmp) --------------------------------------
WORK=$(mktemp -d /srv/portcullis-bench.XXXXXX 2>/dev/null || { mkdir -p /srv; mktemp -d /srv/portcullis-bench.XXXXXX; })
chmod 755 "$WORK"
ROOT=$WORK/root            # jail of all three servers (root-owned)
DATA=$ROOT/data            # writable by benchuser
LOCAL=$WORK/local          # client side files
mkdir -p "$ROOT" "$DATA" "$LOCAL/small" "$WORK/etc" /run/sshd /var/run/vsftpd/empty
chown root:root "$ROOT"; chmod 755 "$ROOT"; chown "$BUSER:$BUSER" "$DATA"
usermod -d "$ROOT" "$BUSER"   # vsftpd chdirs to the home directory at login

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "# kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "# preparing files in $WORK (big file ${SIZE_MIB} MiB, ${SMALL_FILES} x 4 KiB)" >&2
head -c $((SIZE_MIB * 1048576)) /dev/urandom > "$DATA/big.bin"
cp "$DATA/big.bin" "$LOCAL/big.bin"
head -c $((CONCURRENT_MIB * 1048576)) /dev/urandom > "$DATA/c.bin"
chown "$BUSER:$BUSER" "$DATA/big.bin" "$DATA/c.bin"
for i in $(seq 1 "$SMALL_FILES"); do head -c 4096 /dev/urandom > "$LOCAL/small/f$i"; done

ssh-keygen -q -t ed25519 -N '' -f "$WORK/etc/host_ed25519"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$WORK/etc/tls.key" -out "$WORK/etc/tls.crt" 2>/dev/null
chmod 600 "$WORK/etc/tls.key"

# --- OpenSSH sshd -------------------------------------------------------------
cat > "$WORK/etc/sshd_config" <<CONF
Port $SSH_PORT_PEER
ListenAddress 127.0.0.1
HostKey $WORK/etc/host_ed25519
PidFile $WORK/sshd.pid
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
PermitRootLogin no
AllowUsers $BUSER
Ciphers $CIPHERS
MaxStartups 100:30:200
LogLevel ERROR
Subsystem sftp internal-sftp
Match User $BUSER
  ChrootDirectory $ROOT
  ForceCommand internal-sftp
  AllowTcpForwarding no
  X11Forwarding no
CONF
/usr/sbin/sshd -t -f "$WORK/etc/sshd_config"
/usr/sbin/sshd -D -e -f "$WORK/etc/sshd_config" 2>"$WORK/sshd.log" &
SSHD_PID=$!; PIDS+=("$SSHD_PID")

# --- vsftpd -------------------------------------------------------------------
cat > "$WORK/etc/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$FTP_PORT_PEER
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
local_root=$ROOT
allow_writeable_chroot=YES
userlist_enable=NO
pam_service_name=vsftpd
secure_chroot_dir=/var/run/vsftpd/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=24000
pasv_max_port=24100
connect_from_port_20=NO
xferlog_enable=NO
vsftpd_log_file=$WORK/vsftpd.log
ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=NO
force_local_data_ssl=NO
require_ssl_reuse=NO
ssl_tlsv1=NO
ssl_sslv2=NO
ssl_sslv3=NO
ssl_ciphers=HIGH
rsa_cert_file=$WORK/etc/tls.crt
rsa_private_key_file=$WORK/etc/tls.key
CONF
/usr/sbin/vsftpd "$WORK/etc/vsftpd.conf" 2>"$WORK/vsftpd.err" &
VSFTPD_PID=$!; PIDS+=("$VSFTPD_PID")

# --- Portcullis ---------------------------------------------------------------
# Every bench client comes from 127.0.0.1, and sftp_concurrent_downloads starts 50
# logins at once: the per-IP pre-auth cap (32) is off, as sshd's MaxStartups
# (10:30:100, random early drop) let those 50 through in every run here.
cat > "$WORK/etc/portcullis.json" <<CONF
{
  "sftp": { "address": "127.0.0.1:$SSH_PORT_PC", "hostKeyFiles": ["$WORK/etc/host_ed25519"],
            "ciphers": ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"] },
  "ftp":  { "address": "127.0.0.1:$FTP_PORT_PC", "passivePorts": "25000-25100",
            "requireTLS": false, "requireSessionReuse": false,
            "tls": { "certFile": "$WORK/etc/tls.crt", "keyFile": "$WORK/etc/tls.key" } },
  "maxPreAuthConnectionsPerIp": 0,
  "users": [ { "username": "$BUSER", "password": "$BPASS", "root": "$ROOT",
               "canRead": true, "canWrite": true } ]
}
CONF
# BENCH_PC_NODE_OPTIONS: extra node flags for Portcullis only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
# BENCH_SSH2_FLOOR=async|sync puts bench/ssh2-floor.mjs (ssh2 with no server logic)
# in Portcullis's place on the SFTP port, to measure what ssh2 itself costs.
if [ -n "${BENCH_SSH2_FLOOR:-}" ]; then
  "$REPO/node_modules/.bin/node" "$REPO/bench/ssh2-floor.mjs" "$SSH_PORT_PC" "$ROOT" "$BUSER" "$BPASS" \
    "$WORK/etc/host_ed25519" "$BENCH_SSH2_FLOOR" >"$WORK/portcullis.log" 2>&1 &
else
  NODE_OPTIONS="${BENCH_PC_NODE_OPTIONS:-}" "$REPO/bin/portcullis" serve --config "$WORK/etc/portcullis.json" >"$WORK/portcullis.log" 2>&1 &
fi
PC_PID=$!; PIDS+=("$PC_PID")

wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2; tail -5 "$WORK"/*.log "$WORK"/*.err >&2 || true; return 1; }
wait_port "$SSH_PORT_PEER"; wait_port "$FTP_PORT_PEER"; wait_port "$SSH_PORT_PC"
[ -n "${BENCH_SSH2_FLOOR:-}" ] || wait_port "$FTP_PORT_PC"

# --- measurement --------------------------------------------------------------
# CPU seconds of a server and everything it forks during a run: see
# bench/cpu_sampler.py (sshd/vsftpd do their work in children that the kernel may
# reap without ever adding their time to the server's cutime).
wait_no_children() { for _ in $(seq 1 50); do [ -z "$(cat /proc/$1/task/*/children 2>/dev/null)" ] && return 0; sleep 0.05; done; }

# The key exchange is pinned like the ciphers: left to choose, OpenSSH's client
# and sshd agree on sntrup761x25519-sha512 (post-quantum), which ssh2 does not
# offer, so every login to Portcullis was a cheaper curve25519-sha256 and the
# login-heavy cases compared two different key exchanges (see bench/README.md,
# Eighth round).
SFTP_OPTS=(-o BatchMode=no -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o PreferredAuthentications=password -o PubkeyAuthentication=no -o LogLevel=ERROR
  -o KexAlgorithms=curve25519-sha256)
sftp_batch() { # port cipher batchfile
  sshpass -e sftp "${SFTP_OPTS[@]}" -c "$2" -P "$1" -b "$3" "$BUSER@127.0.0.1" >/dev/null
}
printf 'get /data/big.bin %s\n' "$WORK/dl.bin" > "$WORK/b_get"
printf 'put %s /data/up.bin\n' "$LOCAL/big.bin" > "$WORK/b_put"
printf 'ls /data\n' > "$WORK/b_ls"

# one run of a case against a side: run_case CASE SIDE(portcullis|peer)
run_case() {
  local c=$1 side=$2 sp fp
  if [ "$side" = portcullis ]; then sp=$SSH_PORT_PC; fp=$FTP_PORT_PC; else sp=$SSH_PORT_PEER; fp=$FTP_PORT_PEER; fi
  local url=ftp://$BUSER:$BPASS@127.0.0.1:$fp/data
  case $c in
    sftp_get_aes128gcm) sftp_batch "$sp" aes128-gcm@openssh.com "$WORK/b_get" ;;
    sftp_put_aes128gcm) sftp_batch "$sp" aes128-gcm@openssh.com "$WORK/b_put" ;;
    sftp_get_chacha20)  sftp_batch "$sp" chacha20-poly1305@openssh.com "$WORK/b_get" ;;
    sftp_put_chacha20)  sftp_batch "$sp" chacha20-poly1305@openssh.com "$WORK/b_put" ;;
    sftp_small_files)
      printf 'mkdir /data/small\ncd /data/small\nlcd %s\nput *\nls -l\n' "$LOCAL/small" > "$WORK/b_small"
      sftp_batch "$sp" aes128-gcm@openssh.com "$WORK/b_small" ;;
    sftp_logins) for _ in $(seq 1 "$LOGINS"); do sftp_batch "$sp" aes128-gcm@openssh.com "$WORK/b_ls"; done ;;
    sftp_concurrent_downloads) # CONCURRENT sessions at once, each downloading the CONCURRENT_MIB file
      local pids=() k rc=0
      for k in $(seq 1 "$CONCURRENT"); do
        printf 'get /data/c.bin %s\n' "$WORK/dl-c$k.bin" > "$WORK/b_c$k"
        sftp_batch "$sp" aes128-gcm@openssh.com "$WORK/b_c$k" & pids+=($!)
      done
      for k in "${pids[@]}"; do wait "$k" || rc=1; done
      return $rc ;;
    ftp_get)  curl -sS --fail -o "$WORK/dl.bin" "$url/big.bin" ;;
    ftp_put)  curl -sS --fail -T "$LOCAL/big.bin" "$url/up.bin" ;;
    ftps_get) curl -sS --fail --ssl-reqd -k -o "$WORK/dl.bin" "$url/big.bin" ;;
    ftps_put) curl -sS --fail --ssl-reqd -k -T "$LOCAL/big.bin" "$url/up.bin" ;;
    *) echo "unknown case $c" >&2; return 1 ;;
  esac
}
reset_state() { rm -rf "$DATA/small" "$DATA/up.bin" "$WORK"/dl*.bin; sync; }
# Checks that a run moved the right bytes, after its clock has stopped: a server
# that ended a transfer early, or mixed up two sessions' data, would otherwise
# look fast. Prints what is wrong, if anything.
verify_case() {
  case $1 in
    sftp_get_*|ftp_get|ftps_get) cmp -s "$WORK/dl.bin" "$DATA/big.bin" || echo "downloaded file differs from the source" ;;
    sftp_put_*|ftp_put|ftps_put) cmp -s "$DATA/up.bin" "$LOCAL/big.bin" || echo "uploaded file differs from the source" ;;
    sftp_small_files) diff -rq "$LOCAL/small" "$DATA/small" >/dev/null || echo "the small files on the server differ from the client's" ;;
    sftp_concurrent_downloads)
      local k
      for k in $(seq 1 "$CONCURRENT"); do
        cmp -s "$WORK/dl-c$k.bin" "$DATA/c.bin" || { echo "concurrent download $k differs from the source"; return; }
      done ;;
  esac
}
bytes_of() { case $1 in sftp_small_files) echo $((SMALL_FILES * 4096));; sftp_logins) echo 0;;
  sftp_concurrent_downloads) echo $((CONCURRENT * CONCURRENT_MIB * 1048576));; *) echo $((SIZE_MIB * 1048576));; esac; }

RAW=$WORK/raw.jsonl; : > "$RAW"
# CPU time of the clients of a run: the clients are this shell's children
# (sshpass, sftp and its ssh, curl), and the kernel adds each one's user and
# system time to this shell's cutime/cstime once it is reaped. A client that
# uses as much CPU as the run takes wall time cannot get faster, whatever the
# server does: this is what shows that a case is bound by its client.
CLK_TCK=$(getconf CLK_TCK)
client_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
measure() { # case side run_index
  local c=$1 side=$2 i=$3 pid t0 t1 sampler cpu client0 client1
  if [ "$side" = portcullis ]; then pid=$PC_PID; else case $c in ftp*) pid=$VSFTPD_PID;; *) pid=$SSHD_PID;; esac; fi
  reset_state
  /usr/bin/python3 "$REPO/bench/cpu_sampler.py" "$pid" > "$WORK/cpu.out" & sampler=$!
  client0=$(client_ticks)
  t0=$(date +%s.%N)
  local ok=true
  run_case "$c" "$side" || { ok=false; echo "# FAILED: $c $side run $i" >&2; }
  t1=$(date +%s.%N)
  client1=$(client_ticks)
  [ "$side" = portcullis ] || wait_no_children "$pid"
  kill -TERM "$sampler"; wait "$sampler" || true; cpu=$(cat "$WORK/cpu.out")
  if [ "$ok" = true ]; then
    local wrong; wrong=$(verify_case "$c")
    [ -z "$wrong" ] || { ok=false; echo "# WRONG DATA: $c $side run $i: $wrong" >&2; }
  fi
  printf '{"case":"%s","side":"%s","run":%d,"wall_s":%s,"cpu_s":%s,"client_cpu_s":%s,"bytes":%d,"ok":%s}\n' \
    "$c" "$side" "$i" "$(echo "$t1 - $t0" | bc -l | sed 's/^\./0./')" \
    "$cpu" "$(echo "scale=3; ($client1 - $client0) / $CLK_TCK" | bc | sed 's/^\./0./')" "$(bytes_of "$c")" "$ok" >> "$RAW"
  [ "$i" = 0 ] || tail -1 "$RAW" >&2
}
command -v bc >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bc >/dev/null; }

# --- memory per idle authenticated SFTP session -----------------------------------
# Measured first, on servers that have served one login each and no transfer yet:
# after the transfer cases Node's heap and malloc arenas keep what the
# transfers used, and the baseline would be meaningless.
# Proportional set size (shared pages split between the processes sharing them)
# of the server and all its descendants: Portcullis is one process, sshd forks
# two per connection.
# PSS is the fair figure across the two designs, but it moves when another
# process maps the same files: the idle-sessions client is a Node process too,
# and Node's pages that it shares with Portcullis halve Portcullis's PSS of them
# once it starts. The issue's target is RSS; for one process (Portcullis) that is
# exact, for sshd's forks it would count every shared page once per process.
tree_mem_kib() {
  local field=$1 pid=$2 t=0 c
  t=$(awk -v f="^$field:" '$0 ~ f {print $2}' /proc/$pid/smaps_rollup 2>/dev/null || echo 0)
  for c in $(cat /proc/$pid/task/*/children 2>/dev/null); do t=$(( t + $(tree_mem_kib "$field" "$c") )); done
  echo "$t"
}
MEM=$WORK/memory.jsonl; : > "$MEM"
if [ "$IDLE_SESSIONS" -gt 0 ]; then
  sftp_batch "$SSH_PORT_PC" aes128-gcm@openssh.com "$WORK/b_ls"; sftp_batch "$SSH_PORT_PEER" aes128-gcm@openssh.com "$WORK/b_ls"
  for side in portcullis peer; do
    if [ "$side" = portcullis ]; then pid=$PC_PID; port=$SSH_PORT_PC; else pid=$SSHD_PID; port=$SSH_PORT_PEER; fi
    echo "# memory: $IDLE_SESSIONS idle SFTP sessions on $side" >&2
    before=$(tree_mem_kib Pss "$pid"); rss_before=$(tree_mem_kib Rss "$pid")
    mkfifo "$WORK/hold"
    "$REPO/node_modules/.bin/node" "$REPO/bench/idle-sessions.mjs" "$port" "$BUSER" "$IDLE_SESSIONS" 8 < "$WORK/hold" > "$WORK/idle.out" &
    holder=$!
    exec 9>"$WORK/hold"
    for _ in $(seq 1 1200); do grep -q ready "$WORK/idle.out" 2>/dev/null && break; sleep 0.5; done
    sleep 2
    after=$(tree_mem_kib Pss "$pid"); rss_after=$(tree_mem_kib Rss "$pid")
    read -r _ up _ down < "$WORK/idle.out" || { up=0; down=$IDLE_SESSIONS; }
    exec 9>&-; wait "$holder" || true; rm -f "$WORK/hold"
    [ "$side" = portcullis ] || wait_no_children "$pid"
    printf '{"side":"%s","sessions":%d,"failed":%d,"pss_before_kib":%d,"pss_after_kib":%d,"rss_before_kib":%d,"rss_after_kib":%d}\n' \
      "$side" "$up" "$down" "$before" "$after" "$rss_before" "$rss_after" | tee -a "$MEM" >&2
  done
fi
START=$(date +%s)
for c in $CASES; do
  echo "# case $c: warm-up" >&2
  measure "$c" portcullis 0; measure "$c" peer 0
  for i in $(seq 1 "$RUNS"); do measure "$c" portcullis "$i"; measure "$c" peer "$i"; done
done
reset_state

ELAPSED=$(( $(date +%s) - START ))

# --- machine description and results ----------------------------------------------
HOST=$(hostname -s 2>/dev/null || hostname)
OUT=$REPO/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-$HOST.json
export BENCH_RAW=$RAW BENCH_MEMORY=$MEM BENCH_OUT=$OUT BENCH_SIZE_MIB=$SIZE_MIB BENCH_RUNS=$RUNS BENCH_SMALL_FILES=$SMALL_FILES \
  BENCH_LOGINS=$LOGINS BENCH_CONCURRENT=$CONCURRENT BENCH_CONCURRENT_MIB=$CONCURRENT_MIB BENCH_ELAPSED=$ELAPSED \
  BENCH_NODE=$("$REPO/node_modules/.bin/node" --version 2>/dev/null || node --version) \
  BENCH_OPENSSH=$(/usr/sbin/sshd -V 2>&1 | head -1) \
  BENCH_VSFTPD=$(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null || echo unknown) \
  BENCH_PORTCULLIS=$("$REPO/bin/portcullis" --version 2>/dev/null || echo unknown)
/usr/bin/python3 "$REPO/bench/summarize.py"
