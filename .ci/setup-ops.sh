#!/usr/bin/env bash
# Tools the operations tests drive for real, on a fresh Debian host, as root: systemd-analyze
# (package systemd), haproxy and ip (packages haproxy, iproute2), and ansible-core with
# ansible-lint (in their own virtual environment, linked into /usr/local/bin). Idempotent and
# quiet: a second run changes nothing and prints nothing.
set -euo pipefail

OPS_VENV=${KAI_OPS_VENV:-/opt/kai-ops}
PYTHON=${PYTHON:-python3}
ANSIBLE_CORE='ansible-core>=2.19,<2.20'
ANSIBLE_LINT='ansible-lint>=26,<27'

if ! command -v systemd-analyze >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# haproxy (the front door's `haproxy -c` and the multi-host test) and iproute2 (its network
# namespaces), from the OS packages as on a front node.
if ! command -v haproxy >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends haproxy iproute2 >/dev/null
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
