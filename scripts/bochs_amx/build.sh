#!/usr/bin/env bash
# Build a headless Bochs 3.0 with x86-64 + AVX + AVX-512 (EVEX) + AMX emulation.
# Result: $BOCHS_DIR/bin/bochs (idempotent: does nothing if it already exists).
set -euo pipefail

CACHE="${GENRT_BOCHS_DIR:-$HOME/.cache/genrt/bochs}"
TARBALL="bochs_3.0+dfsg.orig.tar.xz"
URL="http://deb.debian.org/debian/pool/main/b/bochs/$TARBALL"
SHA256="78f6c73d4a6472d5130a87ab9dc306d02c7c71ed8e25b3a8ef642e2a7acd282b"
SRC="$CACHE/bochs-3.0"
BIN="$CACHE/bin/bochs"
JOBS="${JOBS:-1}"

if [[ -x "$BIN" ]]; then
  echo "bochs already built: $BIN"
  exit 0
fi

mkdir -p "$CACHE/bin"
cd "$CACHE"
if [[ ! -f "$TARBALL" ]]; then
  echo "downloading $URL"
  curl -fsS --retry 3 --retry-delay 5 -o "$TARBALL.part" "$URL"
  mv "$TARBALL.part" "$TARBALL"
fi
echo "$SHA256  $TARBALL" | sha256sum -c --quiet - || {
  echo "sha256 mismatch for $CACHE/$TARBALL (removed; re-run to download again)" >&2
  rm -f "$TARBALL"; exit 1; }

rm -rf "$SRC"
tar xf "$TARBALL"
cd "$SRC"

# Headless, no plugins, no debugger, no PCI/CD-ROM/sound/USB/network.
# Port 0xE9 output is a runtime option (port_e9_hack) and always compiled in.
CFLAGS="-O2 -pipe" CXXFLAGS="-O2 -pipe" ./configure \
  --with-nogui \
  --enable-cpu-level=6 --enable-x86-64 \
  --enable-avx --enable-evex --enable-amx \
  --enable-all-optimizations \
  --disable-pci --disable-cdrom --disable-a20-pin \
  --disable-docbook --disable-plugins --disable-debugger \
  --disable-gdb-stub --disable-readline --disable-xpm \
  > "$CACHE/configure.log" 2>&1 || { tail -n 30 "$CACHE/configure.log" >&2; exit 1; }

grep -q '^#define BX_SUPPORT_AMX 1' config.h || { echo "AMX not enabled in config.h" >&2; exit 1; }

start=$(date +%s)
make -j"$JOBS" bochs > "$CACHE/make.log" 2>&1 || { tail -n 40 "$CACHE/make.log" >&2; exit 1; }
echo "make took $(( $(date +%s) - start )) s"

cp bochs "$BIN"
echo "built $BIN"
