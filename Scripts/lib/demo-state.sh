# The files Policies/demo.yaml names, made in a state folder: a development CA and server certificate,
# the token and audit keys, demo users with a password and a TOTP secret, the probe identity, and the
# private PAM stack. Source it; do not run it. Safe to repeat: what exists is kept.

# The repository, found when this file is sourced (the scripts change folder afterwards).
DEMO_STATE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# make_demo_state BIN STATE USER...: makes the files for each USER and for `probe`.
make_demo_state() {
  local bin=$1 state=$2 root=$DEMO_STATE_ROOT
  shift 2
  mkdir -p "$state/tls" "$state/pam.d" "$state/upstream/grafana"
  chmod 700 "$state"
  "$bin" certs dev --out "$state/tls" >/dev/null
  [ -f "$state/token-key.pem" ] || "$bin" keys generate --out "$state/token-key.pem" >/dev/null
  [ -f "$state/audit-key.pem" ] || "$bin" keys generate --out "$state/audit-key.pem" >/dev/null
  local name
  for name in "$@" probe; do
    demo_user "$state" "$name"
  done
  # The probe identity's credentials file (the gateway refuses one that others can read).
  printf 'password: %s\ntotp_secret: %s\nwindow: 2\n' "$(cat "$state/users/probe.password")" "$(cat "$state/users/probe.totp")" \
    > "$state/probe.credentials"
  chmod 600 "$state/probe.credentials"
  sed "s|@STATE@|$state|g" "$root/Policies/pam/breakglass-totp.pam" > "$state/pam.d/breakglass"
  cp "$root/Policies/pam/other.pam" "$state/pam.d/other"
  chmod 644 "$state/pam.d/breakglass" "$state/pam.d/other"
  printf '{"service": "status-api", "state": "degraded", "note": "demo upstream behind breakglass"}\n' > "$state/upstream/status.json"
  printf '<html><body>grafana stand-in</body></html>\n' > "$state/upstream/grafana/index.html"
}

# demo_user STATE NAME: a random password (pam_pwdfile, SHA-512 crypt) and TOTP secret (pam_oath) for NAME.
demo_user() {
  local state=$1 name=$2
  touch "$state/passwd" "$state/oath.users"
  chmod 600 "$state/passwd" "$state/oath.users"
  grep -q "^$name:" "$state/passwd" && [ -f "$state/users/$name.password" ] && return 0
  echo "==> demo user '$name' (password + TOTP)"
  mkdir -p "$state/users"
  openssl rand -base64 12 | tr -d '/+=' | head -c 16 > "$state/users/$name.password"
  openssl rand -hex 20 > "$state/users/$name.totp"
  chmod 600 "$state/users/$name.password" "$state/users/$name.totp"
  sed -i "/^$name:/d" "$state/passwd"
  sed -i "/ $name - /d" "$state/oath.users"
  printf '%s:%s\n' "$name" "$(openssl passwd -6 "$(cat "$state/users/$name.password")")" >> "$state/passwd"
  printf 'HOTP/T30/6 %s - %s\n' "$name" "$(cat "$state/users/$name.totp")" >> "$state/oath.users"
}
