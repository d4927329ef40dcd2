# Shared helpers for Scripts/*. Source it; do not run it.

# Installs Debian packages that are missing (apt-get update first, once), as root or through sudo.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The packages the gateway and its tests need.
BREAKGLASS_PACKAGES=(pkg-config libpam0g-dev libssl-dev libpam-pwdfile libpam-oath oathtool openssl curl)

# python3 runs the demo upstream and the benchmark client; any python3 on PATH will do.
ensure_python() {
  command -v python3 >/dev/null 2>&1 || ensure_packages python3
}

repo_root() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd
}
