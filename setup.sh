#!/usr/bin/env bash
# One-time set-up of sockmap-labs on Debian or Ubuntu:
#   1. the system packages the labs need (as root; otherwise prints the sudo line),
#   2. the npm dependencies (npm ci),
#   3. the guest kernel, unpacked into ~/.cache/sockmap-labs (no root, /boot untouched),
#   4. the BPF programs and helpers.
# Safe to run again: each part is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  qemu-system-x86   # runs the lab VM
  busybox-static    # the VM's initramfs
  cpio xz-utils zstd kmod  # packing the initramfs, decompressing and indexing modules
  openssh-server openssh-client  # sshd inside the guest (the host's binary), ssh-keygen
  clang llvm libbpf-dev gcc make libc6-dev linux-libc-dev  # BPF programs and C helpers
  bpftool iproute2 strace socat ncat sockperf util-linux  # what the labs run in the guest
  bash-static       # steps start ~70 ms faster in the guest (no dynamic loading under TCG)
  libxml2-utils tmux chromium  # tests: xmllint (JUnit schema), tmux (interactive modes), chromium (the HTML report)
)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
need_root=""
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    need_root="sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    say "missing system packages: ${missing[*]}"
    echo "    run: $need_root"
  fi
else
  say "system packages: all present"
fi

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "error: sockmap-labs needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  echo "fix:   sudo apt-get install -y nodejs npm   (or install Node 20 from nodejs.org)" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ -n "$need_root" ]; then
  echo
  echo "Set-up is not finished: install the system packages first, then run ./setup.sh again:" >&2
  echo "    $need_root" >&2
  exit 1
fi

say "guest kernel"
node runner/launch.mjs kernels fetch

say "building BPF programs and helpers"
make -s -C bpf

say "ready. Run a lab with:  npm run lab 1"
