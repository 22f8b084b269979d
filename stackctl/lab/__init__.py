"""Lab hosts: several "hosts" on this one machine (``stackctl lab up|down|status``).

Each lab host is a network namespace on a lab bridge, run inside its own mount and UTS
namespace with a private ``/run`` and private state directories, with its own sshd (key-only).
Once deployed, it runs its own libvirtd, QEMU guests and Swift servers. ``plan`` says what a
lab looks like (pure); ``runtime`` makes it so and takes it down again.
"""
