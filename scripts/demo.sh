#!/usr/bin/env bash
# The end of `make up`: import the test image, create a demo tenant with a key, boot a VM,
# and show it answering SSH with the tenant's key. Safe to run again (reuses what exists).
# `scripts/demo.sh --down` deletes the demo VM, key and tenant.
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/stackctl
export STACKCTL_TENANT=demo
home=${STACKCTL_HOME:-$HOME/.local/share/stackctl}
keydir=$home/demo
key=$keydir/id_ed25519
img=build/images/test-guest
ssh_opts=(-i "$key" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=accept-new
          -o UserKnownHostsFile="$keydir/known_hosts" -o LogLevel=ERROR)

has() { "$S" "$@" >/dev/null 2>&1; }
quiet() { "$S" "$@" >/dev/null; }  # progress still shows on stderr
field() { .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

if [ "${1:-}" = "--down" ]; then
  has vm show demo-vm && "$S" vm delete demo-vm
  has bucket show demo-bucket && "$S" bucket delete demo-bucket --force >/dev/null
  for k in $("$S" credentials list -o json 2>/dev/null | .venv/bin/python -c \
      'import json,sys; print(" ".join(c["access_key"] for c in json.load(sys.stdin)))'); do
    "$S" credentials revoke "$k" >/dev/null
  done
  has keypair show demo-key && "$S" keypair delete demo-key
  has tenant show demo && "$S" tenant delete demo
  rm -rf "$keydir"
  echo "demo: removed"
  exit 0
fi

mkdir -p -m 0700 "$keydir"
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C demo@stackctl -f "$key"

has tenant show demo || quiet tenant create demo
has keypair show demo-key || quiet keypair add demo-key --public-key "$key.pub"
has host show aio || quiet host refresh

manifest() { .venv/bin/python -c 'import json,sys; m=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"m": m}))' "$img/manifest.json" "$1"; }
has image show test-guest-kernel || quiet image import test-guest-kernel "$img/vmlinuz" --disk-format aki --public
has image show test-guest-initrd || quiet image import test-guest-initrd "$img/initrd.img" --disk-format ari --public
has image show test-guest || quiet image import test-guest "$img/disk.qcow2" --public \
  --sha256 "$(manifest 'm["files"]["disk"]["sha256"]')" \
  --kernel test-guest-kernel --ramdisk test-guest-initrd --cmdline "$(manifest 'm["cmdline"]')"

has vm show demo-vm || quiet vm create demo-vm --image test-guest --flavor m1.nano --key demo-key
"$S" vm show demo-vm
addr=$("$S" vm show demo-vm -o json | field address)

echo
echo "demo: waiting for SSH on $addr"
for _ in $(seq 1 60); do
  if out=$(ssh "${ssh_opts[@]}" "root@$addr" 'echo "$(hostname): $(uname -sr), up $(cut -d" " -f1 /proc/uptime) s"' 2>/dev/null); then
    echo "demo: the VM answers over SSH with the tenant's key -> $out"
    if [ -f "${STACKCTL_SWIFT_SECRETS:-/etc/stackctl/secrets/swift.json}" ]; then  # storage deployed
      .venv/bin/python scripts/demo_storage.py "$keydir/s3-credentials.json"
    fi
    echo
    echo "Reach it:  ssh -i $key root@$addr"
    echo "Tear down: make down"
    exit 0
  fi
  sleep 1
done
echo "demo: the VM did not answer SSH on $addr within 60 s; see: $S vm console-log demo-vm" >&2
exit 1
