#!/bin/bash
# PID 1 of a sockmap-labs VM, second stage, now on the host's root (read-only).
# Starts what the runner talks to, then stays PID 1: waits, reaping orphaned
# processes, until powered off. The host chose the transport (vm/qemu.ts):
#   ssh     brings up the network that QEMU's user-mode stack offers and starts
#           sshd with this VM's own keys and config (made by the host for this
#           VM only);
#   serial  (sml.transport=serial on the kernel command line) no network, no
#           sshd: the step agent serves the runner on a virtio-serial port, and
#           a login shell waits on a virtio console (vm/serial.ts is the host's
#           end of both).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "sml-stage2: $*" > /dev/console; }

PROJECT=/run/sockmap-labs/project
BUILD=$PROJECT/build
transport=ssh
buildkey=
for arg in $(</proc/cmdline); do
  case "$arg" in
    sml.transport=*) transport=${arg#sml.transport=} ;;
    sml.buildkey=*) buildkey=${arg#sml.buildkey=} ;;
  esac
done

# Under TCG every exec costs tens of milliseconds: what bash can do itself, it
# does (builtins, $(<file), read), and the loopback comes up while the rest goes on.
# (The guest image's init has done the hostname, the loopback, the ports' names
# and the mounts already, with its static busybox: each is skipped here when done.)
echo sockmap-lab >/proc/sys/kernel/hostname
lo_up=
read -r lo_flags </sys/class/net/lo/flags
(( lo_flags & 1 )) || { ip link set lo up & lo_up=$!; }
# (mkdir is a program: its first start costs ~0.2 s under TCG)
[ -d /run/sockmap-labs/steps ] || mkdir -p /run/sockmap-labs/steps

# Is this folder a mount point? (/proc/mounts, read by bash itself)
mounted() {
  local _dev mp _rest
  while read -r _dev mp _rest; do
    [ "$mp" = "$1" ] && return 0
  done </proc/mounts
  return 1
}

# Is there a 9p share with this tag? (A tag file ends in a NUL: read stops there.)
has_share() {
  local t tag
  for t in /sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag; do
    tag=
    [ -r "$t" ] && read -r -d '' tag <"$t"
    [ "$tag" = "$1" ] && return 0
  done
  return 1
}

# A guest-image VM's lab programs (BPF objects, helpers, the step agent) come
# from a share of their own, tag "build" (vm/guest-build.ts), not from the
# checkout's build/: they are built here, by the image's toolchain, when the
# host asks (sml.buildkey=KEY, the share then writable), before the step agent,
# which is one of them, can start. The key written last marks the build done.
if has_share build; then
  BUILD=/run/sockmap-labs/build
  # (the guest image's init has mounted it; a key in it says so at once)
  if [ ! -e $BUILD/key ] && ! mounted $BUILD; then
    mkdir -p $BUILD
    # (an image without util-linux's mount has busybox's)
    mnt=mount
    command -v mount >/dev/null || mnt='busybox mount'
    $mnt -t 9p -o trans=virtio,version=9p2000.L,msize=512000 build $BUILD || say "FAILED: cannot mount the build share"
  fi
  key=
  [ -r $BUILD/key ] && key=$(<$BUILD/key)
  if [ -n "$buildkey" ] && [ "$key" != "$buildkey" ]; then
    say "BUILDING the lab programs (make -C bpf in the guest, once per change to bpf/)"
    if make -s -j"$(nproc)" -C $PROJECT/bpf BUILD=$BUILD >/dev/console 2>&1; then
      echo "$buildkey" >$BUILD/key
      say "BUILT"
    else
      say "FAILED: make -C bpf in the guest failed (its errors are above)"
    fi
  fi
fi

# Names the virtio-serial ports as udev would: /dev/virtio-ports/NAME, a link
# to the port's device. A console port is opened as its tty instead, hvcN,
# numbered in the order the console ports came (we have one: hvc0).
name_ports() {
  local p name consoles=0
  mkdir -p /dev/virtio-ports
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    name=$(<"$p/name")
    [ -n "$name" ] || continue
    if [ "$name" = sockmap-labs.shell ]; then
      ln -sfn "../hvc$consoles" "/dev/virtio-ports/$name"
      consoles=$((consoles + 1))
    else
      ln -sfn "../${p##*/}" "/dev/virtio-ports/$name"
    fi
  done
}

# The step agent, for ever: it serves one runner after another on its port,
# and is started again should it ever exit. Steps find what an SSH session
# would give them: root's home as their folder, and its environment.
serve_agent() {
  local again=
  cd /root || return
  while :; do
    # A clean environment, as `env -i` would make it, without the exec of env.
    (
      # (the names through a file: $(compgen -e) would fork a bash)
      compgen -e >/run/sockmap-labs/env-names
      mapfile -t names </run/sockmap-labs/env-names
      path=$PATH
      unset "${names[@]}"
      export PATH=$path HOME=/root USER=root LOGNAME=root SHELL=/bin/bash
      exec "$BUILD/bin/step-agent" --serve /dev/virtio-ports/sockmap-labs.agent $again </dev/null 2>/dev/console
    )
    # The next one tells a runner the last one was serving that it died.
    again=--restarted
    sleep 1
  done
}

# A login shell on the console's tty, started when the host asks (it sends
# Enter on connecting; vm/serial.ts openShell) and again after each exit, which
# the host learns from the line printed then. The tty is held open meanwhile,
# so the size the host gives it (stty, through the agent) stays; the host
# leaves TERM for the shell in a file.
serve_shell() {
  local tty=/dev/virtio-ports/sockmap-labs.shell con term sid code
  cd /root || return
  while :; do
    exec {con}<>"$tty" || { sleep 1; continue; }
    if read -r -u "$con" _; then
      term=xterm-256color
      [ -r /run/sockmap-labs/shell-term ] && term=$(</run/sockmap-labs/shell-term)
      HOME=/root TERM=$term setsid -c bash -l <&"$con" >&"$con" 2>&"$con" {con}>&- &
      sid=$!
      wait "$sid"
      code=$?
      # What the shell left running goes with it, as a step's processes do.
      pkill -KILL -s "$sid"
      printf '\r\n[sockmap-labs: the shell exited with status %d]\r\n' "$code" >"$tty"
    else
      sleep 1
    fi
    exec {con}>&-
  done
}

# Steps may use the loopback from the first one on.
[ -z "$lo_up" ] || wait $lo_up

if [ "$transport" = serial ]; then
  [ -d /dev/virtio-ports ] || name_ports
  [ -e /dev/virtio-ports/sockmap-labs.agent ] || say "FAILED: no virtio-serial port named sockmap-labs.agent"
  serve_agent &
  disown
  if [ -e /dev/virtio-ports/sockmap-labs.shell ]; then
    serve_shell &
    disown
  fi
  say "AGENT-READY"
else
  ip link set eth0 up
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
  mkdir -p /run/sshd
  chmod 0755 /run/sshd
  # -r: no re-exec of sshd per connection, which halves the time to attach to a
  # warm VM under TCG (0.55 -> 0.25 s); an sshd without -r gets a second try.
  sshd_config=/run/sockmap-labs/vm/sshd_config
  /usr/sbin/sshd -r -e -f $sshd_config 2>/dev/null || /usr/sbin/sshd -e -f $sshd_config || say "FAILED: sshd did not start"
  say "SSHD-STARTED"
fi

trap 'poweroff -f' TERM INT
# Idle without starting a process every second (a `sleep` would cost the guest
# CPU under TCG, and show up among the lab's processes): read from a FIFO that
# nobody writes, with a timeout, and reap between reads.
mkfifo /run/sockmap-labs/idle
exec 3<>/run/sockmap-labs/idle
while :; do
  wait
  read -r -t 1 -u 3 _
done
