#!/bin/busybox sh
# /init of the statfs test VM: load the 9p modules, bring up the NIC, mount the statfs under test
# (reached through QEMU's guestfwd at 10.0.2.100:564) where the tools look for it, and read and
# drive it with busybox tools. Each step prints "STEP <name> rc=<n>" and its output indented by
# "  | ". Ends with NINEP-VM-DONE and powers off.
. /bin/vm-prelude.sh
step() {
  name=$1
  out=$(timeout -s KILL 120 sh -c "$2" 2>&1)
  rc=$?
  echo "STEP $name rc=$rc"
  [ -n "$out" ] && echo "$out" | sed 's/^/  | /'
}
mkdir -p /mnt/statfs
# 9P2000.u, as an operator mounts it for the tools' /mnt/statfs/state.
step mount 'mount -t 9p -o trans=tcp,port=564,version=9p2000.u 10.0.2.100 /mnt/statfs'
step ls 'ls /mnt/statfs'
step state 'cat /mnt/statfs/state'
step nodes 'ls /mnt/statfs/nodes'
step status 'cat /mnt/statfs/nodes/up1/status /mnt/statfs/nodes/dead/status'
step hold 'echo "down up1 maintenance" > /mnt/statfs/ctl && cat /mnt/statfs/nodes/up1/status'
step release 'echo up > /mnt/statfs/nodes/up1/ctl && cat /mnt/statfs/nodes/up1/status'
step bad-command 'echo reboot > /mnt/statfs/nodes/up1/ctl'
step write-state 'echo x > /mnt/statfs/state'
step umount 'umount /mnt/statfs'
# The kernel's defaults: it asks for 9P2000.L, and statfs answers with 9P2000.
step mount-default 'mount -t 9p -o trans=tcp,port=564 10.0.2.100 /mnt/statfs'
step state-default 'cat /mnt/statfs/state'
step umount-default 'umount /mnt/statfs'
echo NINEP-VM-DONE
poweroff -f
