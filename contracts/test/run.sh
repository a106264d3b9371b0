#!/usr/bin/env bash
# Runs the settlement fixtures against AttestationCenter on a local anvil (Prague, 127.0.0.1).
# Installs what it needs: anvil from npm (into ~/.cache/avs-node/npm, or AVS_NPM_PREFIX) and the
# Python packages of requirements.txt. Rebuilds the artifacts first (contracts/build.sh).
#   contracts/test/run.sh            # build, check the fixtures are current, run them
#   contracts/test/run.sh --regen    # rewrite the fixtures from gen_fixtures.py first
set -euo pipefail
ANVIL_VERSION=1.7.1
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${AVS_NPM_PREFIX:-$HOME/.cache/avs-node/npm}"
anvil="$prefix/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
if [ ! -x "$anvil" ] || ! "$anvil" --version | grep -q "$ANVIL_VERSION"; then
  npm install --no-audit --no-fund --prefix "$prefix" "@foundry-rs/anvil-linux-amd64@${ANVIL_VERSION}"
  chmod +x "$anvil"
fi
python3 -c 'import py_ecc, eth_abi, Crypto' 2>/dev/null ||
  python3 -m pip install --quiet -r "$here/requirements.txt"
"$here/../build.sh"
if [ "${1:-}" = "--regen" ]; then
  python3 "$here/gen_fixtures.py"
else
  python3 "$here/gen_fixtures.py" --check
fi
python3 "$here/run_fixtures.py" -v
