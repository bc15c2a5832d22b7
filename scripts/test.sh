#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: Debian packages, npm ci, npm test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm ci --no-audit --no-fund
npm test
