# Sourced by the scripts: apt_install PACKAGE WHY installs a Debian package as root,
# or with sudo, or says what to install by hand.
apt_install() {
  local pkg=$1 why=$2 sudo_=""
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$why: install $pkg and retry" >&2; return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "$why: install $pkg (apt-get install $pkg) and retry" >&2; return 1; }
    sudo_=sudo
  fi
  echo "$why: installing Debian's $pkg package..." >&2
  ($sudo_ apt-get update -qq && $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null) || {
    echo "could not install $pkg; install it ($sudo_ apt-get install $pkg) and retry" >&2; return 1; }
}
