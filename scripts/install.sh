#!/usr/bin/env bash
# Installs hivehub into a home folder (default /opt/hivehub):
#   bin/      hubcore, launcher, hubcli
#   plugins/  the example plugins (heartbeat)
#   config/   hubcore.yaml, launcher.yaml — an existing file is never overwritten
#   docs/     the operator's docs (OPERATIONS.md, SECURITY.md, ...), which the unit names
#   certs/ logs/ stores/ run/  created empty (certs, stores and run private)
# With --systemd it also installs init/hivehub.service with the home rewritten (and ProtectHome
# off when the home is under /home, /root or /run/user, which ProtectHome would hide from the
# launcher), gives the hub's user certs/, stores/ and run/ (hubcore runs as that user; the
# launcher as root, so each plugin gets a user of its own), and runs `systemctl daemon-reload`.
# Run it again to upgrade: binaries and docs are replaced, config kept.
set -euo pipefail

usage() {
  cat <<USAGE
usage: scripts/install.sh [--prefix DIR] [--user USER] [--systemd] [--unit-dir DIR]
                          [--no-build] [--bin-dir DIR]
  --prefix DIR    home to install into (default /opt/hivehub)
  --user USER     the hub's user (and group), which hubcore runs as (default hivehub;
                  created if missing when --systemd is given and we are root)
  --systemd       install the systemd unit (default unit dir /etc/systemd/system)
  --unit-dir DIR  where to put hivehub.service
  --no-build      do not run cargo; take the binaries from --bin-dir
  --bin-dir DIR   where the built binaries are (default target/release)
USAGE
}

root="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/hivehub
user=hivehub
systemd=0
unit_dir=/etc/systemd/system
build=1
bin_dir="$root/target/release"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --systemd) systemd=1; shift ;;
    --unit-dir) unit_dir="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac

if [ "$build" = 1 ]; then
  (cd "$root" && cargo build --release --workspace --bins)
fi
for b in hubcore launcher hubcli heartbeat; do
  [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b is missing; build first" >&2; exit 1; }
done

mkdir -p "$prefix"/{bin,plugins,config,logs,docs}
install -d -m 0700 "$prefix/certs" "$prefix/stores" "$prefix/run"
for b in hubcore launcher hubcli; do install -m 0755 "$bin_dir/$b" "$prefix/bin/$b"; done
install -m 0755 "$bin_dir/heartbeat" "$prefix/plugins/heartbeat"
for f in "$root"/docs/*.md; do install -m 0644 "$f" "$prefix/docs/"; done
for f in "$root"/config/*.yaml; do
  dest="$prefix/config/$(basename "$f")"
  if [ -e "$dest" ]; then
    echo "kept existing $dest"
  else
    install -m 0644 "$f" "$dest"
  fi
done

if [ "$systemd" = 1 ]; then
  if [ "$(id -u)" -eq 0 ] && ! id "$user" >/dev/null 2>&1; then
    useradd --system --home-dir "$prefix" --no-create-home --shell /usr/sbin/nologin "$user"
  fi
  group="$user"
  if id "$user" >/dev/null 2>&1; then
    group="$(id -gn "$user")"
    if [ "$(id -u)" -eq 0 ]; then
      # The hub's user owns what hubcore writes; the launcher (root) runs hubcore as it.
      chown -R "$user:$group" "$prefix"/{certs,stores,run}
    fi
  fi
  # ProtectHome=yes hides /home, /root and /run/user from the service: a home there would be
  # hidden from the launcher itself. Decided on the real path, so a symlink into /home counts.
  protect_home=yes
  real_prefix="$(realpath -m "$prefix")"
  for hidden in /home /root /run/user; do
    case "$prefix/" in "$hidden"/*) protect_home=no ;; esac
    case "$real_prefix/" in "$hidden"/*) protect_home=no ;; esac
  done
  # The home, escaped for sed's replacement.
  esc_prefix="$(printf '%s' "$prefix" | sed -e 's/[|&\\]/\\&/g')"
  unit_sed=(-e "s|/opt/hivehub|$esc_prefix|g")
  if [ "$protect_home" = no ]; then
    unit_sed+=(-e "s|^ProtectHome=yes\$|# install.sh: the home ($esc_prefix) is under /home, /root or /run/user, which\\n# ProtectHome=yes would hide from the launcher itself.\\nProtectHome=no|")
  fi
  mkdir -p "$unit_dir"
  sed "${unit_sed[@]}" "$root/init/hivehub.service" > "$unit_dir/hivehub.service"
  chmod 0644 "$unit_dir/hivehub.service"
  if [ "$unit_dir" = /etc/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload || true
  fi
  echo "installed $unit_dir/hivehub.service (enable with: systemctl enable --now hivehub)"
fi
echo "hivehub installed in $prefix"
