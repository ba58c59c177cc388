#!/bin/sh
# Boot a test host the way init would boot a GPU server: sshd, then the Docker
# service through its init script, so `service docker restart` works for playbooks.
set -eu
rm -f /run/gpuprov-fake-ready

# Without --privileged the cgroup v1 hierarchies are mounted read-only, and the
# inner dockerd must create cgroups for its containers.
for mnt in $(awk '$2 ~ "^/sys/fs/cgroup" {print $2}' /proc/self/mounts); do
    mount -o remount,rw,bind "$mnt"
done

python3 /opt/gpuprov-fake/lib/gpuprov_fake.py setup

mkdir -p /root/.ssh /run/sshd
install -m 600 /etc/gpuprov-fake/authorized_keys /root/.ssh/authorized_keys
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
/usr/sbin/sshd

# docker stop sends SIGTERM through tini: stop dockerd cleanly so its containers survive.
trap 'service docker stop >/dev/null; kill "$(cat /run/sshd.pid)"; exit 0' TERM INT
service docker start >/dev/null
until docker version >/dev/null 2>&1; do sleep 0.1; done
touch /run/gpuprov-fake-ready
while :; do
    sleep 3600 &
    wait $! || true
done
