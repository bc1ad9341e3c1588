#!/usr/bin/env bash
# Checks init/hivehub.service with `systemd-analyze verify`, for CI and before a release.
#
# Usage: init/verify-unit.sh [UNIT_FILE]     (default: hivehub.service next to this script)
#
# UNIT_FILE may also be a unit as scripts/install.sh wrote it (another home than /opt/hivehub).
# The unit names a launcher binary and a user that may exist only on an installed system, so
# the check runs on a copy in a temporary folder with ExecStart pointing at /bin/true and
# User/Group set to root. Everything else is checked as written, and ExecReload must send
# SIGHUP to the launcher (that is how `systemctl reload` reloads it). systemd-analyze exits 0 even
# for unknown keys or bad values (it only warns), so any output line that mentions the unit
# counts as a failure too. Lines about other units (installed on the machine) are ignored.
#
# Exit status: 0 when the unit is clean, 1 when it has problems, 2 when the check cannot run.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
unit=${1:-$here/hivehub.service}
name=$(basename "$unit")
stand_in=/bin/true

analyze=$(command -v systemd-analyze || true)
if [[ -z $analyze ]]; then
    echo "verify-unit: systemd-analyze not found (install systemd)" >&2
    exit 2
fi
if [[ ! -f $unit ]]; then
    echo "verify-unit: no unit file at $unit" >&2
    exit 2
fi
# The launcher: the program of ExecStart, HOME/bin/launcher.
launcher=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit" | head -n 1)
if [[ $launcher != /*/bin/launcher ]]; then
    echo "verify-unit: $unit: ExecStart does not start HOME/bin/launcher (found '${launcher:-nothing}'); update this script" >&2
    exit 1
fi
if ! grep -qx 'ExecReload=/bin/kill -HUP \$MAINPID' "$unit"; then
    echo "verify-unit: $unit: ExecReload must be '/bin/kill -HUP \$MAINPID' (SIGHUP reloads the launcher)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e "s#$launcher#$stand_in#g" \
    -e 's/^User=.*/User=root/' \
    -e 's/^Group=.*/Group=root/' \
    "$unit" >"$tmp/$name"

status=0
out=$("$analyze" verify --man=no "$tmp/$name" 2>&1) || status=$?
ours=$(grep -F -- "$name" <<<"$out" || true)

if [[ $status -ne 0 || -n $ours ]]; then
    echo "verify-unit: $unit has problems (systemd-analyze exit status $status):" >&2
    # Report against the real file, not the temporary copy.
    sed "s#$tmp/$name#$unit#g" <<<"${ours:-$out}" >&2
    exit 1
fi
echo "verify-unit: $unit OK ($("$analyze" --version | head -n 1))"
