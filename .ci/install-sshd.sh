#!/bin/sh
# Installs Debian's OpenSSH server and client for the `mfutop remote` tests (tests/test_remote_ssh.py),
# which start their own sshd on 127.0.0.1. Idempotent and quiet: does nothing when both are present.
set -eu

if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; then
    :
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
fi

# Debian's sshd refuses to start as root without its privilege-separation directory
# (systemd creates it; containers have no systemd).
if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
    mkdir -p -m 0755 /run/sshd
fi
