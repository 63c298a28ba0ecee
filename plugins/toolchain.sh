#!/usr/bin/env bash
# Install the toolchains that build consign's WASM plugins, from Debian's
# packages only. Idempotent: a package already installed is skipped, and
# nothing is fetched when everything is present. Run as root.
#
#   plugins/toolchain.sh          # Rust + C wasm toolchains
#   plugins/toolchain.sh rust     # only the Rust guest toolchain
#   plugins/toolchain.sh c        # only the C guest toolchain
#
# Rust guest: Debian's rustc-web 1.96 (LLVM 22) with its std sources, used
#   through -Zbuild-std (RUSTC_BOOTSTRAP=1) for wasm32-unknown-unknown, linked
#   by wasm-component-ld (from rust-web-llvm) + lld-22 straight into a
#   component. rustup's cargo stays first on PATH; `.cargo/config.toml` of each
#   guest crate points `build.rustc` at /usr/bin/rustc.
# C guest: clang-14 + lld-14 (wasm-ld) + compiler-rt builtins for wasm32. The
#   wit-bindgen C bindings are committed (plugins/c-sink/gen/), so wit-bindgen
#   is not needed here; the core module becomes a component with the same
#   wasm-component-ld.
set -euo pipefail

sel="${*:-rust c}"
want() { [[ " $sel " == *" $1 "* ]]; }

pkgs=()
want rust && pkgs+=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22)
# c: wasm-component-ld (rust-web-llvm) and wasm-ld-22 (lld-22) link the component
want c && pkgs+=(clang-14 lld-14 libclang-rt-14-dev-wasm32 make)
want c && ! want rust && pkgs+=(rust-web-llvm lld-22)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    [[ " ${missing[*]-} " == *" $p "* ]] || missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "toolchain.sh: all present (${pkgs[*]})"
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "toolchain.sh: missing ${missing[*]}; run me as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "toolchain.sh: installing ${missing[*]}"
  apt-get update -q -o DPkg::Lock::Timeout=600
  apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
fi

# What the build scripts rely on, checked so a broken install says so here.
want rust && for f in /usr/bin/rustc /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld; do
  [ -x "$f" ] || { echo "toolchain.sh: $f missing after install" >&2; exit 1; }
done
want rust && { [ -d /usr/lib/rustlib/src/rust/library ] || { echo "toolchain.sh: rust std sources missing (rust-web-src)" >&2; exit 1; }; }
want c && for f in /usr/bin/clang-14 /usr/bin/wasm-ld-22 /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a; do
  [ -e "$f" ] || { echo "toolchain.sh: $f missing after install" >&2; exit 1; }
done
echo "toolchain.sh: ok"
