"""What this host is and can do: KVM and its capabilities, QEMU binaries."""
