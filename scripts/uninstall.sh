#!/usr/bin/env bash
# Removes a hivehub installation (default /opt/hivehub). Keeps certs/ and stores/ (the hub's
# identity, its clients and their tokens) and config/ unless --purge is given, so a reinstall
# finds the same hub.
set -euo pipefail
prefix=/opt/hivehub
purge=0
unit_dir=/etc/systemd/system
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --purge) purge=1; shift ;;
    --unit-dir) unit_dir="$2"; shift 2 ;;
    -h|--help) echo "usage: scripts/uninstall.sh [--prefix DIR] [--purge] [--unit-dir DIR]"; exit 0 ;;
    *) echo "uninstall.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [ -e "$unit_dir/hivehub.service" ]; then
  if [ "$unit_dir" = /etc/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now hivehub >/dev/null 2>&1 || true
  fi
  rm -f "$unit_dir/hivehub.service"
fi
[ -d "$prefix" ] || { echo "nothing installed in $prefix"; exit 0; }
rm -rf "$prefix/bin" "$prefix/plugins" "$prefix/docs" "$prefix/logs" "$prefix/run"
if [ "$purge" = 1 ]; then
  rm -rf "$prefix/certs" "$prefix/stores" "$prefix/config"
  rmdir "$prefix" 2>/dev/null || true
  echo "hivehub removed from $prefix, including its certificates, stores and config"
else
  echo "hivehub removed from $prefix; kept certs/, stores/ and config/ (use --purge to remove them)"
fi
