"""The controller remembers what each host has cached and skips that work on later creates;
a host that lost a cached file gets it again, and the create still succeeds."""

import hashlib
import subprocess

from .conftest import IMAGE_DIR, ssh


def test_create_recaches_an_image_the_host_lost(cli, tenant_key, guest_image, tmp_path):
    # A re-encoded copy of the disk: same guest, its own sha256, so no other VM shares its
    # cache file and removing it below cannot hurt anything else.
    variant = tmp_path / "variant.qcow2"
    subprocess.run(["qemu-img", "convert", "-c", "-O", "qcow2",
                    str(IMAGE_DIR / guest_image["files"]["disk"]["path"]), str(variant)],
                   check=True)
    sha = hashlib.sha256(variant.read_bytes()).hexdigest()
    files = guest_image["files"]
    cli.run("image", "import", "vk", str(IMAGE_DIR / files["kernel"]["path"]),
            "--disk-format", "aki")
    cli.run("image", "import", "vr", str(IMAGE_DIR / files["initrd"]["path"]),
            "--disk-format", "ari")
    cli.run("image", "import", "variant", str(variant), "--kernel", "vk", "--ramdisk", "vr",
            "--cmdline", guest_image["cmdline"])
    cached = f"/var/lib/stackctl/images/{sha}"
    try:
        cli.run("vm", "create", "c1", "--image", "variant", "--flavor", "m1.nano", "--key", "k1",
                "--no-wait")
        cli.run("vm", "delete", "c1")
        subprocess.run(["rm", "-f", cached], check=True)

        proc = cli.run("vm", "create", "c2", "--image", "variant", "--flavor", "m1.nano",
                       "--key", "k1")
        assert "lost a cached image; caching it again" in proc.stderr
        vm = cli.json("vm", "show", "c2")
        assert vm["state"] == "running"
        assert ssh(vm["address"], tenant_key, "hostname").stdout.strip() == "c2"
        with open(cached, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == sha
    finally:
        cli.run("vm", "delete", "c2", check=False)
        subprocess.run(["rm", "-f", cached], check=True)
