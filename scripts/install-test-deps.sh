#!/usr/bin/env bash
# Installs what the tests need on a Debian machine: mosquitto's clients (real MQTT peers),
# systemd-analyze (the unit check), iproute2 (the network namespace test and the core's
# per-address connection cap), Chromium and Node.js with playwright-core (the status page's
# browser test), and Python's Prometheus parser (the /metrics test). Installs only what is
# missing; uses sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v ip >/dev/null || need+=(iproute2)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs npm)
# The sandbox tests switch users with setpriv and run /usr/bin/python3 inside a plugin.
command -v setpriv >/dev/null || need+=(util-linux)
[ -x /usr/bin/python3 ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install -q prometheus-client
npm ci --prefix crates/launcher/tests/browser --no-audit --no-fund >/dev/null
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# The Debian package starts a system mosquitto on 1883; the tests never use it.
$SUDO systemctl stop mosquitto >/dev/null 2>&1 || true
# The example plugins and their test (crates/launcher/tests/examples.rs): paho-mqtt for the
# system python3, PyJWT with cryptography (the key-assertion login), MQTT.js in examples/node.
need=()
/usr/bin/python3 -c 'import paho.mqtt.client' 2>/dev/null || need+=(python3-paho-mqtt)
/usr/bin/python3 -c 'import jwt' 2>/dev/null || need+=(python3-jwt)
/usr/bin/python3 -c 'import cryptography' 2>/dev/null || need+=(python3-cryptography)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
npm ci --prefix examples/node --no-audit --no-fund >/dev/null
