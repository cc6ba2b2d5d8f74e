#!/usr/bin/env bash
# Builds the dvsigner OCI image FROM scratch with buildah, without Docker and without pulling
# any base image: the root filesystem of tests/container/rootfs.sh (the binary, exactly the
# shared libraries it needs plus the dynamic loader, /etc/passwd with the non-root user
# dvsigner 10001:10001, the data directory /var/lib/dvsigner owned by it), then the image
# configuration: user 10001:10001, entrypoint /usr/local/bin/dvsigner, PATH=/usr/local/bin (so
# `dvsigner` resolves as a command, as the Helm chart runs it), volume /var/lib/dvsigner,
# ports 9000 (signer), 9100 (combiner), 9001 (metrics), OCI labels. The image is committed to
# the local containers storage (podman sees it), and with ARCHIVE also written as an OCI
# archive (`podman load -i`, `skopeo copy oci-archive:…`, `kind load image-archive`).
#
# Usage: tests/container/build-image.sh BINARY IMAGE:TAG [ARCHIVE]
#   release image: cargo build --release && tests/container/build-image.sh target/release/dvsigner dvsigner/dvsigner:0.1.0
#   CI (tests/it/container.rs) passes the dev-profile binary `cargo test` built, target/debug/dvsigner.
# Environment: DVSIGNER_IMAGE_SOURCE (label org.opencontainers.image.source; default: the git
# remote `origin` without credentials, else "unknown"), SOURCE_DATE_EPOCH (image creation time,
# for reproducible builds; default: now).
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 BINARY IMAGE:TAG [ARCHIVE]" >&2
  exit 2
fi
binary=$1 image=$2 archive=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
command -v buildah >/dev/null || { echo "error: buildah not found (apt-get install buildah)" >&2; exit 1; }
[ -x "$binary" ] || { echo "error: $binary is not an executable" >&2; exit 1; }

# Labels. The version is the binary's own (`dvsigner 0.1.0`), so the label cannot disagree
# with what the image runs.
version=$("$binary" --version | awk 'NR == 1 { print $2 }')
[ -n "$version" ] || { echo "error: $binary --version printed no version" >&2; exit 1; }
cargo_field() { sed -n "s/^$1 = \"\\(.*\\)\"\$/\\1/p" "$repo/Cargo.toml" | head -n 1; }
licenses=$(cargo_field license)
description=$(cargo_field description)
source_url=${DVSIGNER_IMAGE_SOURCE:-$(git -C "$repo" remote get-url origin 2>/dev/null | sed -E 's#://[^/@]*@#://#' || true)}
source_url=${source_url:-unknown}
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  timestamp=(--timestamp "$SOURCE_DATE_EPOCH")
else
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  timestamp=()
fi
case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac

stage=$(mktemp -d)
ctr=
cleanup() {
  if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
  rm -rf "$stage"
}
trap cleanup EXIT

"$here/rootfs.sh" "$binary" "$stage/rootfs"
ctr=$(buildah from --name "dvsigner-image-build-$$-$RANDOM" scratch)
# Everything root's, except the data directory, which belongs to the runtime user. (`buildah
# copy` of a directory copies its contents, so the data directory goes in through its parent.)
mkdir "$stage/data"
mv "$stage/rootfs/var/lib/dvsigner" "$stage/data/"
buildah copy --quiet "$ctr" "$stage/rootfs" / >/dev/null
buildah copy --quiet --chown 10001:10001 "$ctr" "$stage/data" /var/lib >/dev/null
buildah config \
  --os linux --arch "$arch" \
  --user 10001:10001 \
  --entrypoint '["/usr/local/bin/dvsigner"]' \
  --cmd '["--help"]' \
  --env PATH=/usr/local/bin \
  --workingdir /var/lib/dvsigner \
  --volume /var/lib/dvsigner \
  --port 9000/tcp --port 9100/tcp --port 9001/tcp \
  --stop-signal SIGTERM \
  --label "org.opencontainers.image.title=dvsigner" \
  --label "org.opencontainers.image.description=$description" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.licenses=$licenses" \
  --label "org.opencontainers.image.source=$source_url" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  "$ctr"
id=$(buildah commit --quiet --format oci "${timestamp[@]}" --rm "$ctr" "$image")
ctr=
if [ -n "$archive" ]; then
  rm -f "$archive"
  buildah push --quiet "$id" "oci-archive:$archive:$image"
fi
echo "built $image ($id) from $binary, version $version${archive:+, archive $archive}"
