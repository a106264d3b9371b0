#!/usr/bin/env bash
# Rebuilds contracts/artifacts/*.json from contracts/src/*.sol with solc-js from the npm registry,
# pinned below and installed once into ~/.cache/avs-node/npm (override with AVS_NPM_PREFIX).
# Check the committed artifacts with: `contracts/build.sh && git diff --exit-code contracts/artifacts`.
#
# EVM version `paris` (no PUSH0, no MCOPY): the registries must run on any EVM chain an AVS
# reads, including local test nodes (ganache 7) and L2s that lag mainnet forks.
# Each artifact is {"contractName", "compiler", "abi", "bytecode"}, a shape alloy's `sol!` reads.
#
# AttestationCenter is compiled the same way (paris): it reaches SHA-256, MODEXP and the EIP-2537
# BLS12-381 precompiles through plain STATICCALLs, which need no newer opcodes. It *runs* only
# on a chain with EIP-2537 (Prague or later). Its tests: contracts/test/run.sh (see
# contracts/README.md).
set -euo pipefail
SOLC_VERSION=0.8.26
EVM_VERSION=paris
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${AVS_NPM_PREFIX:-$HOME/.cache/avs-node/npm}"
if [ ! -f "$prefix/node_modules/solc/package.json" ] ||
  [ "$(node -p "require('$prefix/node_modules/solc/package.json').version")" != "$SOLC_VERSION" ]; then
  npm install --no-audit --no-fund --prefix "$prefix" "solc@${SOLC_VERSION}"
fi
SOLC="$prefix/node_modules/solc" SRC="$here/src" OUT="$here/artifacts" \
  EVM_VERSION="$EVM_VERSION" node -e '
    const fs = require("fs");
    const path = require("path");
    const solc = require(process.env.SOLC);
    const src = process.env.SRC;
    const sources = {};
    for (const f of fs.readdirSync(src).filter((f) => f.endsWith(".sol")).sort()) {
      sources[f] = { content: fs.readFileSync(path.join(src, f), "utf8") };
    }
    const settings = {
      evmVersion: process.env.EVM_VERSION,
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    };
    const out = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings })));
    const errors = (out.errors || []).filter((e) => e.severity === "error");
    for (const e of out.errors || []) console.error(e.formattedMessage);
    if (errors.length) process.exit(1);
    for (const [file, contracts] of Object.entries(out.contracts)) {
      for (const [name, c] of Object.entries(contracts)) {
        const artifact = {
          contractName: name,
          compiler: `solc-js ${solc.version()} evmVersion=${settings.evmVersion} optimizer runs=200`,
          abi: c.abi,
          bytecode: "0x" + c.evm.bytecode.object,
        };
        const dest = path.join(process.env.OUT, `${name}.json`);
        fs.writeFileSync(dest, JSON.stringify(artifact, null, 2) + "\n");
        console.log(`wrote contracts/artifacts/${name}.json (from ${file})`);
      }
    }
  '
