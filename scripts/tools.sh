#!/usr/bin/env bash
# tools.sh - install the pinned test tools from the Go module proxy into a cache, once.
#
#   scripts/tools.sh sops     # the standard sops CLI, for the sops <-> talforge interop tests
#
# Binaries go to ${TALFORGE_TOOLS_BIN:-~/.cache/talforge/bin}; a version-named copy makes the
# cache check free. Prints the path of the installed binary.
set -euo pipefail

BIN=${TALFORGE_TOOLS_BIN:-$HOME/.cache/talforge/bin}
SOPS_VERSION=v3.13.3
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOWORK=off
unset GOFLAGS

install() { # name module version
  local name=$1 module=$2 version=$3
  if [[ ! -x $BIN/$name-$version ]]; then
    mkdir -p "$BIN"
    echo "tools: installing $name $version (once; cached in $BIN)" >&2
    # Outside the project module, so talforge's go.mod is never touched.
    (cd "$BIN" && GOBIN="$BIN/.gobin" go install -trimpath "$module@$version")
    mv "$BIN/.gobin/$name" "$BIN/$name-$version"
  fi
  ln -sfn "$name-$version" "$BIN/$name"
  echo "$BIN/$name"
}

case ${1:-} in
  sops) install sops github.com/getsops/sops/v3/cmd/sops "$SOPS_VERSION" ;;
  *) echo "usage: $0 sops" >&2; exit 2 ;;
esac
