#!/usr/bin/env bash
# tools.sh - install the pinned test tools from the Go module proxy into a cache, once.
#
#   scripts/tools.sh sops     # the standard sops CLI, for the sops <-> talforge interop tests
#   scripts/tools.sh weed     # SeaweedFS, a real S3 server on loopback for the backup tests
#
# Binaries go to ${TALFORGE_TOOLS_BIN:-~/.cache/talforge/bin}; a version-named copy makes the
# cache check free. Prints the path of the installed binary.
set -euo pipefail

BIN=${TALFORGE_TOOLS_BIN:-$HOME/.cache/talforge/bin}
SOPS_VERSION=v3.13.3
# SeaweedFS (Apache-2.0). Its go.mod has a replace directive, so `go install mod@version` is
# refused; it is built from a generated wrapper module that repeats the replace.
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
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

install_weed() {
  local version=$WEED_VERSION src="$BIN/src/weed-$WEED_VERSION"
  if [[ ! -x $BIN/weed-$version ]]; then
    echo "tools: building SeaweedFS $version (once, ~8 min cold on 2 cores; cached in $BIN)" >&2
    mkdir -p "$src"
    cat >"$src/go.mod" <<MOD
module talforge.local/weedwrapper

go 1.26

require github.com/seaweedfs/seaweedfs $version

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
MOD
    cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
GO
    (cd "$src" && go mod tidy >/dev/null 2>&1 || go mod download all >/dev/null)
    (cd "$src" && go build -trimpath -ldflags '-s -w' -o "$BIN/.weed-$version.tmp" github.com/seaweedfs/seaweedfs/weed)
    mv "$BIN/.weed-$version.tmp" "$BIN/weed-$version"
  fi
  ln -sfn "weed-$version" "$BIN/weed"
  echo "$BIN/weed"
}

case ${1:-} in
  sops) install sops github.com/getsops/sops/v3/cmd/sops "$SOPS_VERSION" ;;
  weed) install_weed ;;
  *) echo "usage: $0 sops|weed" >&2; exit 2 ;;
esac
