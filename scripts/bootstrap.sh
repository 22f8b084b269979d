#!/usr/bin/env bash
# Prepare the control node: the OS packages it needs and the project's virtualenv.
# Idempotent: a second run only checks. Debian 12 (bookworm) as root, systemd or not.
# --test also installs what the test suite needs (PostgreSQL's server, to prove a DSN works).
set -euo pipefail
cd "$(dirname "$0")/.."
for_tests=false
[ "${1:-}" = "--test" ] && for_tests=true

# Control node: build libvirt-python, detect image formats (qemu-img), ssh to guests,
# build the test guest image (e2fsprogs, cpio), let Ansible's apt module find python3-apt,
# run lab hosts' sshd (openssh-server; never started on this machine's own addresses).
packages=(python3 python3-venv python3-dev python3-apt gcc pkg-config libvirt-dev qemu-utils
          openssh-client openssh-server e2fsprogs cpio)
if $for_tests; then
  packages+=(postgresql xfsprogs)
  # The tests start a private cluster of their own; don't let the package create and start
  # a system-wide one on port 5432.
  if [ ! -e /etc/postgresql-common/createcluster.conf ] && [ "$(id -u)" -eq 0 ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing OS packages (${missing[*]}); run as root or install them first" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd, openssh-server's postinst would start an sshd on every address of this
  # machine: Debian's policy-rc.d convention stops package scripts from starting services.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing stackctl and its dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -U pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test,postgres]'
  touch "$stamp"
fi
echo "bootstrap: ok ($(.venv/bin/stackctl --version 2>/dev/null || echo 'stackctl installed'))"
