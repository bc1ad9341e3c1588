#!/usr/bin/env bash
# Builds hivehub in release mode, stages a home (default ./dev-home) with the binaries, the
# example heartbeat plugin and the sample configuration (an existing config is kept), and runs
# the launcher in the foreground. Ctrl-C stops the plugins, then the core.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
home="${1:-$root/dev-home}"
cd "$root"
cargo build --release --workspace --bins
mkdir -p "$home"/{bin,plugins,config,certs,logs,stores,run}
install -m 0755 target/release/hubcore target/release/launcher "$home/bin/"
[ -x target/release/hubcli ] && install -m 0755 target/release/hubcli "$home/bin/"
install -m 0755 target/release/heartbeat "$home/plugins/"
for f in config/*.yaml; do
  [ -e "$home/config/$(basename "$f")" ] || install -m 0644 "$f" "$home/config/"
done
echo "hivehub home: $home"
exec "$home/bin/launcher" --home "$home"
