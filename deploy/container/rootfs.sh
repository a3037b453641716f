#!/usr/bin/env bash
# Assembles the image's root file system from a built `wasmcol`: the binary (symbols
# stripped), the shared libraries it loads (from this machine, found by ldd), CA
# certificates, a passwd entry for the non-root user 10001, and the container config.
#   deploy/container/rootfs.sh BINARY CONTEXT_DIR
# then: buildah bud --isolation chroot -f deploy/container/Containerfile -t wasmcol CONTEXT_DIR
set -euo pipefail
bin=$1
ctx=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$ctx/rootfs
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc/wasmcol" "$root/etc/ssl/certs" "$root/tmp" \
  "$ctx/state/data"
objcopy --strip-all "$bin" "$root/usr/local/bin/wasmcol"
# The dynamic loader and every library, at the paths the binary asks for.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nwasmcol:x:10001:10001:wasmcol:/var/lib/wasmcol:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nwasmcol:x:10001:\n' >"$root/etc/group"
cp "$here/config.yaml" "$root/etc/wasmcol/config.yaml"
chmod 1777 "$root/tmp"
