#!/usr/bin/env bash
# One-time set-up of sockmap-labs. A host needs Node.js 20+ and QEMU, nothing
# else: every program the labs run lives in the guest image.
#   1. QEMU for this machine's guests (Debian/Ubuntu: apt, with the few
#      packages an image build needs; macOS: Homebrew; elsewhere: the command
#      is printed). Root only for this, and for Node where it is missing and
#      the distribution has Node 20+.
#   2. the npm dependencies (npm ci).
#   3. the guest image: downloaded (npm run image pull); where no published
#      image is reachable, built from Debian packages (npm run image build,
#      Debian/Ubuntu only).
#   4. the image's first boot (npm run image prepare): the lab programs are
#      built in the guest once, so the first lab run is as quick as the next.
#
#   ./setup.sh --build   build the image instead of downloading it
#   ./setup.sh --dev     also what the developers' modes and tests need: the
#                        host-root mode (--rootfs host: its kernel and ~25
#                        packages), --backend vng/host, tmux, xmllint, chromium
# Safe to run again: each part is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

build=""
dev=""
for a in "$@"; do
  case "$a" in
    --build) build=1 ;;
    --dev) dev=1 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $a (try ./setup.sh --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
os=$(uname -s)
arch=$(uname -m)

# ---- 1. QEMU (and Node where missing) ---------------------------------------
if [ "$os" = Darwin ]; then
  QEMU_BIN=qemu-system-aarch64
  [ "$arch" = x86_64 ] && QEMU_BIN=qemu-system-x86_64
  if ! command -v "$QEMU_BIN" >/dev/null || ! command -v node >/dev/null; then
    if ! command -v brew >/dev/null; then
      echo "error: QEMU and Node are installed with Homebrew on macOS, and brew is missing" >&2
      echo "fix:   install Homebrew (https://brew.sh), then run ./setup.sh again" >&2
      exit 1
    fi
    say "installing qemu and node with Homebrew"
    brew install qemu node
  fi
elif command -v dpkg-query >/dev/null; then
  PACKAGES=(qemu-system-x86)
  [ "$arch" = aarch64 ] && PACKAGES=(qemu-system-arm)
  # What npm run image build runs (vm/image.ts BUILD_TOOLS; test/setup-packages.test.ts
  # keeps the two lists the same): asked for now, with QEMU, so the one root step
  # covers a build too when no published image can be downloaded. Small, and most
  # are on every Debian already.
  IMAGE_BUILD_PACKAGES=(apt dpkg tar erofs-utils kmod xz-utils)
  PACKAGES+=("${IMAGE_BUILD_PACKAGES[@]}")
  if [ -n "$dev" ]; then
    PACKAGES+=(
      qemu-system-arm   # the arm64 guest on an x86_64 host (TCG)
      busybox-static    # the host-root VM's initramfs
      cpio zstd         # packing the initramfs, decompressing modules (xz and kmod: above)
      openssh-server openssh-client  # the host-root VM's sshd (the host's binary), ssh-keygen
      clang llvm libbpf-dev gcc make libc6-dev linux-libc-dev  # BPF programs and C helpers, built on the host
      bpftool iproute2 strace socat ncat sockperf util-linux  # what the labs run on the host root
      bash-static       # steps start ~70 ms faster in the guest (no dynamic loading under TCG)
      libxml2-utils tmux chromium  # tests: xmllint (JUnit schema), tmux (interactive modes), chromium (the HTML report)
      mmdebstrap docker-registry  # tests: fresh Debian 12 roots (clean room, classroom kit), a real OCI registry (image push/pull)
    )
  fi
  # Node where it is missing, when the distribution has 20 or newer (Debian 12 and Ubuntu 24.04 do not).
  if ! command -v node >/dev/null; then
    candidate=$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: \([0-9]*\).*/\1/p')
    if [ -n "$candidate" ] && [ "$candidate" -ge 20 ] 2>/dev/null; then PACKAGES+=(nodejs npm); fi
  fi
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      say "installing system packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
      # docker-registry's package starts a registry on :5000 where systemd runs; the tests start their own.
      if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then systemctl disable --now docker-registry.service >/dev/null 2>&1 || true; fi
    else
      say "missing system packages: ${missing[*]}"
      echo "Set-up is not finished: install them first (the one step that needs root), then run ./setup.sh again:" >&2
      echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
      exit 1
    fi
  else
    say "system packages: all present"
  fi
else
  command -v qemu-system-x86_64 >/dev/null || command -v qemu-system-aarch64 >/dev/null || {
    echo "error: QEMU is missing" >&2
    echo "fix:   Fedora: sudo dnf install qemu-system-x86 (qemu-system-aarch64 on arm64); Arch: sudo pacman -S qemu-base" >&2
    exit 1
  }
fi

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "error: sockmap-labs needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  echo "fix:   install Node 20 or newer: https://nodejs.org (or: brew install node; or your distribution's nodejs if it is 20+)" >&2
  exit 1
fi

# ---- 2. npm dependencies -------------------------------------------------------
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

# ---- 3. the guest image ------------------------------------------------------------
if node runner/launch.mjs image verify >/dev/null 2>&1; then
  say "guest image: present"
else
  pulled=""
  if [ -z "$build" ]; then
    say "guest image: downloading (npm run image pull)"
    node runner/launch.mjs image pull && pulled=1 || say "no published image could be downloaded: building it from Debian packages instead"
  fi
  if [ -z "$pulled" ]; then
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
      echo "error: building the guest image needs Debian's apt-get and dpkg-deb, and none could be downloaded" >&2
      echo "fix:   copy an image from a Debian/Ubuntu machine: there 'npm run image export class.tar', here 'npm run image import class.tar'" >&2
      exit 1
    fi
    say "guest image: building (npm run image build; about a minute and ~250 MB of packages)"
    node runner/launch.mjs image build
  fi
fi

# ---- 4. the image's first boot --------------------------------------------------------
# The first lab run would build the lab programs in the guest (about a minute
# under TCG): done here once instead, and again only after a change to bpf/ or
# a new image (it says "nothing to do" otherwise).
if node runner/launch.mjs image prepare --check >/dev/null 2>&1; then
  say "lab programs: built"
else
  say "guest image: first boot, building the lab programs in it (npm run image prepare; once, about a minute)"
  node runner/launch.mjs image prepare
fi

# ---- developers: the host-root mode's kernel and programs ----------------------------------
if [ -n "$dev" ]; then
  say "host-root mode: guest kernel"
  node runner/launch.mjs kernels fetch
  say "host-root mode: building BPF programs and helpers"
  make -s -C bpf
fi

say "ready. Run a lab with:  npm run lab 1"
