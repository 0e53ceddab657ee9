#!/usr/bin/env bash
# Installs the Debian packages luray needs to build and test, running apt-get update first when
# the package lists are empty. Does nothing when everything is present.
# `install-deps.sh bench` also installs the serve benchmarks' tools (wrk, nginx) when missing.
set -eu
pkgs=(build-essential pkg-config clang liblua5.4-dev lua5.4 libuv1-dev libnanomsg-dev libcjson-dev
      libsodium-dev libreadline-dev libcmocka-dev tmux libopenblas-dev libxgboost-dev
      libhttp-parser-dev curl)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
case ${1:-} in
"") ;;
bench)
    # By command, not package: any nginx build serves the static file.
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    ;;
*) echo "usage: install-deps.sh [bench]" >&2; exit 2 ;;
esac
[ ${#missing[@]} -eq 0 ] && exit 0
echo "luray: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    sudo=""
    command -v sudo >/dev/null && sudo=sudo
    [ -n "$sudo" ] || { echo "luray: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2; exit 1; }
else
    sudo=""
fi
export DEBIAN_FRONTEND=noninteractive
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
    $sudo apt-get update -q
fi
$sudo apt-get install -y -q "${missing[@]}" || { $sudo apt-get update -q && $sudo apt-get install -y -q "${missing[@]}"; }
