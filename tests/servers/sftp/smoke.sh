#!/usr/bin/env bash
# Smoke test of the running test sshd with real clients (OpenSSH sftp, curl/libssh2).
# usage: smoke.sh [ENV_FILE]   (default: ${CONSIGN_TEST_RUN_DIR:-/tmp/consign-test-servers}/env.sh)
set -uo pipefail
ENV_FILE=${1:-${CONSIGN_TEST_RUN_DIR:-/tmp/consign-test-servers}/env.sh}
# shellcheck disable=SC1090
. "$ENV_FILE"
pass=0; fail=0
W=$(mktemp -d "${TMPDIR:-/tmp}/sftp-smoke.XXXXXX"); trap 'rm -rf "$W"' EXIT
t() { # NAME CMD...
  local name=$1; shift
  if "$@" >"$W/last" 2>&1; then echo "PASS $name"; pass=$((pass+1)); else echo "FAIL $name"; tail -5 "$W/last"; fail=$((fail+1)); fi
}
SSHO=(-o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$SFTP_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null
      -o IdentitiesOnly=yes -o ConnectTimeout=5 -P "$SFTP_PORT")
id=$$-$RANDOM
echo "payload $id" > "$W/f.txt"
printf 'put %s s-%s.part\nput %s s-%s.txt\nrename s-%s.part s-%s.txt\nls -l\n' "$W/f.txt" "$id" "$W/f.txt" "$id" "$id" "$id" > "$W/batch"

t "key auth: put + posix-rename over an existing file + ls" \
  sftp -b "$W/batch" -i "$SFTP_KEY" -o BatchMode=yes "${SSHO[@]}" "$SFTP_USER@$SFTP_HOST"
t "uploaded file is in SFTP_LOCAL_DIR" bash -c "cmp '$W/f.txt' '$SFTP_LOCAL_DIR/s-$id.txt' && [ ! -e '$SFTP_LOCAL_DIR/s-$id.part' ]"
t "SFTP_KEY_PASSPHRASE decrypts SFTP_KEY_ENCRYPTED" \
  bash -c "[ \"\$(ssh-keygen -y -P '$SFTP_KEY_PASSPHRASE' -f '$SFTP_KEY_ENCRYPTED' | cut -d' ' -f1,2)\" = \"\$(cut -d' ' -f1,2 '$SFTP_KEY_ENCRYPTED.pub')\" ]"
t "encrypted key is really encrypted (empty passphrase fails)" bash -c "! ssh-keygen -y -P '' -f '$SFTP_KEY_ENCRYPTED'"
printf '#!/bin/sh\necho "$SFTP_KEY_PASSPHRASE"\n' > "$W/askpass"; chmod +x "$W/askpass"
printf 'ls\n' > "$W/ls"
t "encrypted key auth end to end (OpenSSH, passphrase via SSH_ASKPASS)" \
  env SSH_ASKPASS="$W/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0 \
  sftp -o BatchMode=no -b "$W/ls" -i "$SFTP_KEY_ENCRYPTED" -o PreferredAuthentications=publickey "${SSHO[@]}" "$SFTP_USER@$SFTP_HOST"
printf '#!/bin/sh\necho "$SFTP_PASSWORD"\n' > "$W/askpw"; chmod +x "$W/askpw"
t "password auth (OpenSSH)" env SSH_ASKPASS="$W/askpw" SSH_ASKPASS_REQUIRE=force DISPLAY=:0 \
  sftp -o BatchMode=no -b "$W/ls" -o PreferredAuthentications=password -o PubkeyAuthentication=no "${SSHO[@]}" "$SFTP_USER@$SFTP_HOST"
if curl -V 2>/dev/null | grep -q '^Protocols:.* sftp'; then
  t "password auth (curl/libssh2)" curl -sS --fail -k -u "$SFTP_USER:$SFTP_PASSWORD" -T "$W/f.txt" "sftp://$SFTP_HOST:$SFTP_PORT/upload/pw-$id.txt"
  t "wrong password rejected (curl/libssh2)" bash -c "! curl -sS -k -u '$SFTP_USER:nope' -T '$W/f.txt' 'sftp://$SFTP_HOST:$SFTP_PORT/upload/x-$id.txt'"
  t "encrypted key auth (curl/libssh2)" curl -sS --fail -k -u "$SFTP_USER:" --key "$SFTP_KEY_ENCRYPTED" --pubkey "$SFTP_KEY_ENCRYPTED.pub" \
    --pass "$SFTP_KEY_PASSPHRASE" -T "$W/f.txt" "sftp://$SFTP_HOST:$SFTP_PORT/upload/enc-$id.txt"
  t "host key matches SFTP_KNOWN_HOSTS (curl/libssh2 known_hosts check)" curl -sS --fail -u "$SFTP_USER:" --key "$SFTP_KEY" \
    --pubkey "$SFTP_KEY.pub" --hostpubsha256 "$(ssh-keygen -lf "$SFTP_KNOWN_HOSTS" -E sha256 | awk '{print $2}' | sed 's/^SHA256://')" \
    "sftp://$SFTP_HOST:$SFTP_PORT/upload/"
fi
t "SFTP_BAD_KNOWN_HOSTS is rejected (host key mismatch)" bash -c "out=\$(sftp -b '$W/ls' -i '$SFTP_KEY' -o BatchMode=yes -o StrictHostKeyChecking=yes \
  -o UserKnownHostsFile='$SFTP_BAD_KNOWN_HOSTS' -o GlobalKnownHostsFile=/dev/null -P '$SFTP_PORT' '$SFTP_USER@$SFTP_HOST' 2>&1) && exit 1; echo \"\$out\"; grep -q 'has changed' <<<\"\$out\""
printf 'put %s /readonly/nope.txt\n' "$W/f.txt" > "$W/ro"
t "write to SFTP_READONLY_DIR is denied" bash -c "! sftp -b '$W/ro' -i '$SFTP_KEY' -o BatchMode=yes ${SSHO[*]} '$SFTP_USER@$SFTP_HOST'"
t "cannot escape the chroot (/etc/passwd is absent)" bash -c "printf 'get /etc/passwd $W/pw\n' > '$W/esc'; ! sftp -b '$W/esc' -i '$SFTP_KEY' -o BatchMode=yes ${SSHO[*]} '$SFTP_USER@$SFTP_HOST'"
rm -f "$SFTP_LOCAL_DIR"/*-"$id".* 2>/dev/null
echo "sftp smoke: $pass passed, $fail failed"
[ "$fail" = 0 ]
