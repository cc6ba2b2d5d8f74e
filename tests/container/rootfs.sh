#!/usr/bin/env bash
# Lays out the root filesystem of the dvsigner container image in DIR: the binary at
# /usr/local/bin/dvsigner, exactly the shared libraries `ldd` resolves for it plus the dynamic
# loader (each at the path the loader found it, so no ld.so.cache is needed), /etc/passwd and
# /etc/group with the non-root user dvsigner (uid/gid 10001), /etc/nsswitch.conf, the data
# directory /var/lib/dvsigner (mode 0700, to be owned by 10001), /etc/dvsigner for mounted
# configuration and /tmp. No shell, no package manager, nothing else.
#
# Used by tests/container/build-image.sh (buildah, FROM scratch) and by the Dockerfile's build
# stage, so both images hold the same files. glibc 2.34 or newer is assumed (Debian 12's 2.36):
# its `files` and `dns` name services are part of libc.so.6, so host names resolve without
# loading libnss_* modules.
#
# Usage: tests/container/rootfs.sh BINARY DIR   (DIR must not exist yet)
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY DIR" >&2
  exit 2
fi
binary=$1 root=$2
[ -x "$binary" ] && [ -f "$binary" ] || { echo "error: $binary is not an executable file" >&2; exit 1; }
[ ! -e "$root" ] || { echo "error: $root already exists" >&2; exit 1; }
# Modes below are set explicitly; the directories mkdir creates must be searchable by uid 10001.
umask 022
command -v ldd >/dev/null || { echo "error: ldd not found (package libc-bin)" >&2; exit 1; }

mkdir -p "$root"/usr/local/bin "$root"/etc/dvsigner "$root"/var/lib/dvsigner "$root"/tmp
install -m 0755 "$binary" "$root"/usr/local/bin/dvsigner

# `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-linux-x86-64.so.2
# (0x…)" (the loader), "linux-vdso.so.1 (0x…)" (in the kernel, no file), "libx.so => not found".
# A static binary has none ("statically linked" / "not a dynamic executable").
ldd_out=$(ldd "$binary" 2>&1) || true
if grep -q 'not found' <<<"$ldd_out"; then
  echo "error: $binary needs libraries that are not installed:" >&2
  grep 'not found' <<<"$ldd_out" >&2
  exit 1
fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)
if [ -z "$libs" ] && ! grep -qE 'statically linked|not a dynamic executable' <<<"$ldd_out"; then
  echo "error: cannot read the libraries of $binary from ldd:" >&2
  echo "$ldd_out" >&2
  exit 1
fi
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  # -L: the file itself where the path is a symbolic link (the loader's /lib64 path is one).
  cp -L "$lib" "$root$lib"
  chmod 0755 "$root$lib"
done

cat >"$root"/etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
dvsigner:x:10001:10001:dvsigner:/var/lib/dvsigner:/usr/sbin/nologin
PASSWD
cat >"$root"/etc/group <<'GROUP'
root:x:0:
dvsigner:x:10001:
GROUP
cat >"$root"/etc/nsswitch.conf <<'NSS'
passwd: files
group: files
hosts: files dns
NSS
chmod 0644 "$root"/etc/passwd "$root"/etc/group "$root"/etc/nsswitch.conf
chmod 0755 "$root"/usr "$root"/usr/local "$root"/usr/local/bin "$root"/etc "$root"/etc/dvsigner "$root"/var "$root"/var/lib
chmod 0700 "$root"/var/lib/dvsigner
chmod 1777 "$root"/tmp
