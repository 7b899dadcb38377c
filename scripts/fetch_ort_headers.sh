#!/usr/bin/env bash
# Fetches ONNX Runtime's C/C++ headers (the onnxruntime wheels ship none) for building genrt's ORT custom-op
# library, without touching the system's apt setup: Debian trixie's libonnxruntime-dev (ORT 1.21, API 21) is
# downloaded with a private apt state folder and unpacked with dpkg -x.
#
#   bash scripts/fetch_ort_headers.sh [DEST]     # default DEST: .ort (git-ignored)
#   export ORT_INCLUDE_DIR="$PWD/.ort/usr/include/onnxruntime"
#
# Prints the include folder on its last line. Exits non-zero (and the build then goes on without the library)
# when apt/dpkg are missing or the package cannot be fetched.
set -euo pipefail
dest=$(realpath -m "${1:-.ort}")
include="$dest/usr/include/onnxruntime"
if [ -f "$include/onnxruntime_c_api.h" ]; then
  echo "$include"
  exit 0
fi
command -v apt-get >/dev/null && command -v dpkg >/dev/null || { echo "apt-get/dpkg not found" >&2; exit 1; }
state="$dest/apt"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc/sources.list.d" "$state/etc/preferences.d"
arch=$(dpkg --print-architecture)
cat >"$state/etc/sources.list" <<SOURCES
deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SOURCES
apt_opts=(
  -o "Dir::Etc::sourcelist=$state/etc/sources.list" -o "Dir::Etc::sourceparts=$state/etc/sources.list.d"
  -o "Dir::Etc::preferencesparts=$state/etc/preferences.d" -o "Dir::State=$state" -o "Dir::State::status=/dev/null"
  -o "Dir::Cache=$state/cache" -o "APT::Architecture=$arch" -o "Debug::NoLocking=1"
  # only the package lists: a host with apt-file also asks for Contents files, whose mirror sync once failed the fetch
  -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::Contents-udeb::DefaultEnabled=false"
)
for try in 1 2 3; do  # a mirror in mid-sync fails an update now and then
  apt-get "${apt_opts[@]}" -qq update >&2 && break
  [ "$try" -lt 3 ] || exit 1
  sleep 10
done
(cd "$state/cache/archives" && apt-get "${apt_opts[@]}" -qq download libonnxruntime-dev >&2)
dpkg -x "$state"/cache/archives/libonnxruntime-dev_*.deb "$dest"
test -f "$include/onnxruntime_c_api.h"
echo "$include"
