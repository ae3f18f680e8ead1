"""Labs: a KVM host as a VM (nested virtualization under TCG, or under the
host's KVM where it can nest), booted from an image built at set-up, that
runs one command against the current checkout and brings back what it wrote.

    image   the lab image on disk (kernel, root file system, manifest) and the
            kernel configuration it needs (pure checks)
    job     what one command needs inside the lab: the files to pack, the
            paths to bring back, the script (pure), packed as a cpio
    machine the lab QEMU's command line (pure), its accelerator choice, and
            running it: boot, stream the console, collect the results
"""
