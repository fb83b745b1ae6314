#!/usr/bin/env bash
# Tools the operations tests drive for real, on a fresh Debian host, as root, from the OS packages:
# systemd-analyze (systemd), openssl (the engine TLS tests make their own CA), promtool
# (prometheus), Chromium for the browser tests (chromium; Playwright drives it, no browser is
# downloaded), haproxy and ip (haproxy, iproute2: the front door and its network-namespace hosts);
# and ansible-core with ansible-lint (in their own virtual environment, linked into
# /usr/local/bin). Idempotent and quiet: a second run changes nothing and prints nothing.
set -euo pipefail

OPS_VENV=${KAI_OPS_VENV:-/opt/kai-ops}
PYTHON=${PYTHON:-python3}
ANSIBLE_CORE='ansible-core>=2.19,<2.20'
ANSIBLE_LINT='ansible-lint>=26,<27'

missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Only the commands are wanted: no server left running where systemd started one.
    if [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus haproxy >/dev/null 2>&1 || true
    fi
fi

if ! "$OPS_VENV/bin/python" -c 'import ansiblelint' >/dev/null 2>&1; then
    "$PYTHON" -m venv "$OPS_VENV"
    "$OPS_VENV/bin/pip" install --quiet --disable-pip-version-check "$ANSIBLE_CORE" "$ANSIBLE_LINT"
fi

for tool in "$OPS_VENV"/bin/ansible "$OPS_VENV"/bin/ansible-*; do
    link=/usr/local/bin/$(basename "$tool")
    if [ "$(readlink "$link" 2>/dev/null)" != "$tool" ]; then
        ln -sf "$tool" "$link"
    fi
done
