#!/usr/bin/env bash
# Throw-away OpenSSH sshd (SFTP only) on 127.0.0.1:$SFTP_PORT for consign's integration tests.
# Adapted from a reference script known to work on the CI machines (Debian 12, OpenSSH 9.2, root).
#
#   start-sshd.sh setup   # create dirs, keys, config, known_hosts files (idempotent, keeps existing keys)
#   start-sshd.sh exec    # exec sshd in the foreground (-D -e) inside a private mount namespace
#   start-sshd.sh         # setup + exec
#
# Normally called by ../servers.sh (which runs `setup` synchronously, then `exec` in its own session).
#
# Nothing under /etc is modified: sshd runs in a private mount namespace (unshare --mount) where
# /etc/passwd, /etc/shadow and /run are overlaid by bind mounts / a tmpfs. This is also why the
# chroot works at all: sshd refuses a ChrootDirectory whose path contains a group/world-writable
# component (such as /tmp), so the chroot dir is bind-mounted at /run/sftp-chroot inside the namespace.
#
# Layout under $SFTP_DIR (keys are generated once and reused, so host key and client keys survive restarts):
#   etc/ssh_host_ed25519_key      host key
#   etc/sshd_config, passwd, shadow, authorized_keys/dtest
#   chroot/                       root:root 0755   = "/" for user dtest
#   chroot/upload/                uid 2001 0755    = "/upload" (writable by dtest; SFTP_LOCAL_DIR on the host)
#   chroot/readonly/              root:root 0755   = "/readonly" (readable, not writable: permission tests)
#   client/id_ed25519             client key, no passphrase
#   client/id_ed25519_enc         client key, passphrase $SFTP_KEY_PASSPHRASE
#   client/bad_host_ed25519_key   an unrelated ed25519 key used for bad_known_hosts
#   known_hosts                   "[127.0.0.1]:PORT ssh-ed25519 <host key>"
#   bad_known_hosts               "[127.0.0.1]:PORT ssh-ed25519 <some other key>"
#
# User dtest (uid 2001): chrooted, sftp-only (ForceCommand internal-sftp), start dir /upload,
# password $SFTP_PASSWORD or either client key.
set -euo pipefail
SFTP_PORT=${SFTP_PORT:-2222}
SFTP_DIR=${SFTP_DIR:?set SFTP_DIR to the server state dir}
SFTP_PASSWORD=${SFTP_PASSWORD:-dtestpw}
SFTP_KEY_PASSPHRASE=${SFTP_KEY_PASSPHRASE:-consign-test-passphrase}
SFTP_UID=2001
BIND=127.0.0.1

setup() {
  mkdir -p "$SFTP_DIR"/{etc/authorized_keys,chroot/upload,chroot/readonly,client}
  chmod 755 "$SFTP_DIR" "$SFTP_DIR/chroot" "$SFTP_DIR/chroot/readonly"
  chown root:root "$SFTP_DIR/chroot" "$SFTP_DIR/chroot/readonly"
  chown "$SFTP_UID:$SFTP_UID" "$SFTP_DIR/chroot/upload"; chmod 755 "$SFTP_DIR/chroot/upload"
  echo "read-only fixture" > "$SFTP_DIR/chroot/readonly/hello.txt"

  local k=$SFTP_DIR/etc/ssh_host_ed25519_key c=$SFTP_DIR/client
  [ -f "$k" ] || ssh-keygen -q -t ed25519 -N '' -C consign-test-host -f "$k"
  [ -f "$c/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C consign-test-client -f "$c/id_ed25519"
  if [ ! -f "$c/id_ed25519_enc" ]; then
    ssh-keygen -q -t ed25519 -N "$SFTP_KEY_PASSPHRASE" -C consign-test-client-enc -f "$c/id_ed25519_enc"
  fi
  [ -f "$c/bad_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C consign-test-wrong-host -f "$c/bad_host_ed25519_key"
  cat "$c/id_ed25519.pub" "$c/id_ed25519_enc.pub" > "$SFTP_DIR/etc/authorized_keys/dtest"

  echo "[$BIND]:$SFTP_PORT $(cut -d' ' -f1,2 "$k.pub")" > "$SFTP_DIR/known_hosts"
  echo "[$BIND]:$SFTP_PORT $(cut -d' ' -f1,2 "$c/bad_host_ed25519_key.pub")" > "$SFTP_DIR/bad_known_hosts"

  # passwd/shadow overlays = the system files + the test user (only visible inside sshd's namespace)
  local hash; hash=$(openssl passwd -6 "$SFTP_PASSWORD")
  grep -v '^dtest:' /etc/passwd > "$SFTP_DIR/etc/passwd"
  echo "dtest:x:$SFTP_UID:$SFTP_UID:consign sftp test:/upload:/usr/sbin/nologin" >> "$SFTP_DIR/etc/passwd"
  { grep -v '^dtest:' /etc/shadow || true; echo "dtest:$hash:19000:0:99999:7:::"; } > "$SFTP_DIR/etc/shadow"
  chmod 640 "$SFTP_DIR/etc/shadow"; chown root:shadow "$SFTP_DIR/etc/shadow" 2>/dev/null || true

  # PerSourcePenalties (OpenSSH >= 9.8) would lock out a client after repeated failures, which breaks
  # retry tests; older sshd (Debian 12 has 9.2) rejects the keyword, so add it only when understood.
  local extra="" ver
  ver=$(/usr/sbin/sshd -V 2>&1 | sed -n 's/^OpenSSH_\([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1)
  if [ -n "$ver" ] && [ $(( ${ver% *} * 100 + ${ver#* } )) -ge 908 ]; then extra="PerSourcePenalties no"; fi

  cat > "$SFTP_DIR/etc/sshd_config" <<CFG
ListenAddress $BIND
HostKey $k
PidFile $SFTP_DIR/sshd.pid
AuthorizedKeysFile $SFTP_DIR/etc/authorized_keys/%u
AllowUsers dtest
StrictModes no
UsePAM no
UseDNS no
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 50
MaxAuthTries 10
$extra
Subsystem sftp internal-sftp -l INFO
Match User dtest
    ChrootDirectory /run/sftp-chroot
    ForceCommand internal-sftp -l INFO -d /upload
CFG
}

run() {
  # Private mount namespace: a tmpfs on /run (sshd privsep dir + the chroot mount point) and bind
  # mounts over /etc/passwd and /etc/shadow. unshare without --fork execs, so the pid stays the same.
  exec unshare --mount --propagation private bash -c '
    set -e
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /run/sshd /run/sftp-chroot
    mount --bind "$0/chroot" /run/sftp-chroot
    mount --bind "$0/etc/passwd" /etc/passwd
    mount --bind "$0/etc/shadow" /etc/shadow
    /usr/sbin/sshd -t -f "$0/etc/sshd_config" -p "$1"
    exec /usr/sbin/sshd -D -e -f "$0/etc/sshd_config" -p "$1"
  ' "$SFTP_DIR" "$SFTP_PORT"
}

case "${1:-all}" in
  setup) setup ;;
  exec) run ;;
  all) setup; run ;;
  *) echo "usage: $0 [setup|exec]" >&2; exit 2 ;;
esac
