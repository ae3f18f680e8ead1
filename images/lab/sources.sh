#!/usr/bin/env bash
# Print the host's Debian bookworm apt sources (bookworm, -updates, -security,
# -backports; main), whatever mirror the host uses, as one-line `deb` entries
# for ARCH: what mmdebstrap builds a lab's root file system from.
#   sources.sh ARCH
set -euo pipefail
arch=${1:?usage: sources.sh ARCH}
apt-cache policy 2>/dev/null | awk '
    /^ *[0-9]+ [a-z+]+:\/\// { uri=$2; n=split($3, a, "/"); suite=a[1]; comp=a[2]; next }
    /^ +release / && uri != "" {
        if ($0 ~ /o=Debian/ && suite ~ /^bookworm(-updates|-security|-backports)?$/ && comp == "main")
            print "deb [arch=" ARCH " signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] " uri " " suite " " comp
        uri = ""
    }' ARCH="$arch" | sort -u
