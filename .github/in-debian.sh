#!/usr/bin/env bash
# Runs a command in Debian 12 with Node 20 (the project's own CI image), with
# KVM, the host's kernel and modules (read-only, for the kernel matrix), and
# the caches kept in the workspace so actions/cache can save them. Set-up as
# the developers' (--dev: the host-root mode's packages and kernel, the test
# tools), with the guest image built from Debian packages (--build).
#   .github/in-debian.sh npm test
set -euo pipefail
cd "$(dirname "$0")/.."
kvm=()
[ -e /dev/kvm ] && kvm=(--device /dev/kvm)
exec docker run --rm \
  "${kvm[@]}" \
  -v /boot:/host/boot:ro -v /lib/modules:/host/lib/modules:ro \
  -v "$PWD":/src -w /src \
  -e CI=true -e GITHUB_ACTIONS \
  -e LAB_CACHE_DIR=/src/.lab-cache -e npm_config_cache=/src/.npm-cache \
  node:20-bookworm \
  bash -c './setup.sh --dev --build >/dev/null && "$@"' bash "$@"
