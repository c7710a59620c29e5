#!/usr/bin/env bash
# Assembles the root file system of norn's runtime image in OUT/rootfs
# from the binaries in BIN_DIR: nornd and norn in /usr/local/bin (debug
# info stripped), the shared libraries `ldd` lists for them (and the
# dynamic loader), and an unprivileged user norn (uid and gid 10001).
# Nothing else: no shell, no package manager. OUT/data is the empty /data,
# copied apart with --chown (COPY keeps no owner). Used by `make image` and
# by the build stage of deploy/container/Containerfile.
#   tools/image-rootfs.sh BIN_DIR OUT
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BIN_DIR OUT" >&2; exit 2; }
bin_dir=$1
rm -rf "$2"
mkdir -p "$2/data"
out=$2/rootfs
mkdir -p "$out/usr/local/bin" "$out/etc/norn"
for binary in nornd norn; do
  [ -x "$bin_dir/$binary" ] || { echo "image-rootfs: $bin_dir/$binary is missing; build it first" >&2; exit 1; }
  install -m 0755 "$bin_dir/$binary" "$out/usr/local/bin/$binary"
  # Without line tables (backtraces keep function names): 73 MiB to 30.
  strip --strip-debug "$out/usr/local/bin/$binary"
done
# Every library either binary links, with its path, and the loader.
libraries=$(ldd "$bin_dir/nornd" "$bin_dir/norn" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | sort -u)
for library in $libraries; do
  mkdir -p "$out$(dirname "$library")"
  cp -L "$library" "$out$library"
done
cat > "$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/nonexistent:/sbin/nologin
norn:x:10001:10001:norn:/data:/sbin/nologin
PASSWD
printf "hosts: files dns\n" > "$out/etc/nsswitch.conf"
cat > "$out/etc/group" <<'GROUP'
root:x:0:
norn:x:10001:
GROUP
chmod 0700 "$2/data"
