#!/usr/bin/env bash
# Installs the Debian packages the local one-node Slurm test needs (tests/test_slurm.sh):
# slurmctld, slurmd, the client commands and munge. Skips apt when all are present. Not part of
# install-deps.sh: sdbatch itself never needs Slurm installed to build or run.
set -euo pipefail
packages=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-slurm: all packages present"
  exit 0
fi
echo "install-slurm: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
# policy-rc.d 101 keeps the packages' own services from starting: the test starts its daemons
# itself, with its own configuration, and stops them when done.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
  "${sudo_cmd[@]}" chmod 755 "$policy"
  own_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  "${missing[@]}" || status=$?
[ "$own_policy" -eq 0 ] || "${sudo_cmd[@]}" rm -f "$policy"
exit "$status"
