# Shared helpers for scripts/test and scripts/demo: section headers, root/sudo, Debian packages, Python.
# Source it from a script that has `set -euo pipefail`; it defines functions only.

_LIB_T0=$(date +%s)

# section TITLE: a header that stands out in a long CI log, with the seconds elapsed since start.
section() {
    local now
    now=$(date +%s)
    printf '\n==== %s  [+%ss]\n' "$*" "$((now - _LIB_T0))"
}

die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

# as_root CMD...: run CMD as root: directly when we are root, else through sudo, else explain and stop.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* -- run this script as root, install sudo, or run that command as root yourself"
    fi
}

# have_binary NAME: true when NAME is on PATH or in the sbin directories (not on a normal user's PATH).
have_binary() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# stop_service NAME: stop and disable a system service that a package started on install. Containers often
# have no systemd and sometimes no `service`: try what exists, and never fail.
stop_service() {
    local name=$1
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        as_root systemctl stop "$name" >/dev/null 2>&1 || true
        as_root systemctl disable "$name" >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        as_root service "$name" stop >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$name" ]; then
        as_root "/etc/init.d/$name" stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$name" ]; then
        as_root update-rc.d "$name" disable >/dev/null 2>&1 || true
    fi
}

# ensure_debian_packages BINARY:PACKAGE...: apt-get install the packages whose binary is missing, then stop
# the system services they start on install (the tests run their own servers on free loopback ports).
ensure_debian_packages() {
    local pair binary package missing=()
    for pair in "$@"; do
        binary=${pair%%:*}
        package=${pair#*:}
        if ! have_binary "$binary"; then
            case " ${missing[*]-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all present: $*"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages ${missing[*]} and no apt-get: install them by hand (Debian 12 package names)"
    echo "installing: ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    for package in "${missing[@]}"; do
        stop_service "$package"
    done
    for pair in "$@"; do
        have_binary "${pair%%:*}" || die "'${pair%%:*}' still missing after installing '${pair#*:}'"
    done
}

# find_python: print the path of a Python >= 3.11 (python3.11 first, then python3), or stop with a message.
find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    die "Python >= 3.11 not found (tried python3.11, python3). On Debian 12: apt-get install python3 python3-venv"
}

# ensure_venv DIR: create (or reuse) a virtual environment at DIR with a Python >= 3.11.
ensure_venv() {
    local venv=$1 python
    if [ -x "$venv/bin/python" ] &&
        "$venv/bin/python" -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        echo "reusing $venv ($("$venv/bin/python" --version))"
        return 0
    fi
    python=$(find_python)
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        # Debian splits venv/ensurepip out of the interpreter package.
        echo "$python has no venv/ensurepip: installing Debian's python3-venv"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
    fi
    rm -rf "$venv"
    "$python" -m venv "$venv" || die "could not create a virtual environment at $venv with $python"
    echo "created $venv with $("$venv/bin/python" --version)"
}

# Byte-compile the project's own packages, as pip does for a regular (non-editable) install: an
# editable install leaves that to the first import, and where the environment forbids writing
# bytecode (PYTHONDONTWRITEBYTECODE) every process recompiles every module it imports (~0.06 s of
# each `neurospasm detect`). Python reads these files whatever that setting says, and recompiles
# in memory any module edited since (the files record the source's mtime and size).
compile_sources() {
    "$1/bin/python" -m compileall -q -j 0 ingest detectors firmware_sim dashboard >/dev/null ||
        die "could not byte-compile the sources with $1/bin/python"
}
