#!/usr/bin/env bash
# Set up xbar-cosim on a Debian machine (as root, or with sudo):
#   1. ngspice >= 42 with KLU (from bookworm-backports on Debian 12), skipped when present;
#   2. a virtual environment in .venv with the package and its test dependencies.
# Safe to run again: every step checks before it acts.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
NGSPICE_MIN=42
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

ngspice_version() {
    # prints the major version of the ngspice on PATH, or nothing
    command -v ngspice >/dev/null 2>&1 || return 0
    ngspice --version 2>/dev/null | sed -n 's/.*ngspice-\([0-9][0-9]*\).*/\1/p' | head -n 1
}

have_libngspice() {
    ldconfig -p 2>/dev/null | grep -q 'libngspice\.so'
}

install_ngspice() {
    [ -r /etc/os-release ] || die "no /etc/os-release: install ngspice >= $NGSPICE_MIN with KLU by hand"
    . /etc/os-release
    [ "${ID:-}" = debian ] || die "not Debian (${ID:-unknown}): install ngspice >= $NGSPICE_MIN and libngspice0 by hand"
    local suite="${VERSION_CODENAME:-}"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$suite" = bookworm ]; then
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            say "adding the bookworm-backports apt source"
            echo "deb http://deb.debian.org/debian bookworm-backports main" \
                | $SUDO tee /etc/apt/sources.list.d/xbar-backports.list >/dev/null
        fi
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq -t bookworm-backports ngspice libngspice0 >/dev/null
    else
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq ngspice libngspice0 >/dev/null
    fi
}

v="$(ngspice_version)"
if [ -n "$v" ] && [ "$v" -ge "$NGSPICE_MIN" ] && have_libngspice; then
    say "ngspice $v already installed"
else
    say "installing ngspice >= $NGSPICE_MIN with KLU (found: ${v:-none})"
    install_ngspice
    v="$(ngspice_version)"
    [ -n "$v" ] && [ "$v" -ge "$NGSPICE_MIN" ] \
        || die "ngspice ${v:-missing} after install; need >= $NGSPICE_MIN with KLU (Debian 12: bookworm-backports)"
    say "ngspice $v installed"
fi

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PY is $("$PY" --version 2>&1); xbar-cosim needs Python >= 3.11"
if [ ! -x .venv/bin/python ]; then
    say "creating the virtual environment .venv"
    "$PY" -m venv .venv || { $SUDO apt-get install -y -qq python3-venv >/dev/null && "$PY" -m venv .venv; }
fi
say "installing xbar-cosim into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/xbar doctor
