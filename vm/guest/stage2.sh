#!/bin/bash
# PID 1 of a sockmap-labs VM, second stage, now on the host's root (read-only).
# Brings up the network that QEMU's user-mode stack offers and starts sshd
# with this VM's own keys and config (made by the host for this VM only).
# Then stays PID 1: waits, reaping orphaned processes, until powered off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "sml-stage2: $*" > /dev/console; }

hostname sockmap-lab 2>/dev/null
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

mkdir -p /run/sshd /run/sockmap-labs/steps
chmod 0755 /run/sshd
# -r: no re-exec of sshd per connection, which halves the time to attach to a
# warm VM under TCG (0.55 -> 0.25 s); an sshd without -r gets a second try.
sshd_config=/run/sockmap-labs/vm/sshd_config
/usr/sbin/sshd -r -e -f $sshd_config 2>/dev/null || /usr/sbin/sshd -e -f $sshd_config || say "FAILED: sshd did not start"
say "SSHD-STARTED"

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
