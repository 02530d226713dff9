#!/usr/bin/env bash
# Installs every Debian package nex needs (only what is missing; `apt-get update` at most once),
# then configures and builds nex in Release into build/. Works as root or through sudo.
# NEX_WERROR=ON turns compiler warnings into errors (CI builds).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config          # toolchain
  ccache                                    # the test command's second (sanitizer) build
  libnats-dev nats-server                   # NATS client library and the real server
  libsodium-dev libssl-dev                  # nkeys/xkeys (Ed25519, NaCl box); SHA-2 and TLS
  nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev
  libmozjs-102-dev                          # SpiderMonkey: JavaScript and WebAssembly functions
  libcurl4-openssl-dev                      # the HTTP host service
  libcpp-httplib-dev                        # the metrics endpoint's HTTP server
  libseccomp-dev                            # the namespace sandbox's system-call filter
  containernetworking-plugins iptables      # sandbox networks (CNI ptp + host-local, ipMasq)
  busybox-static e2fsprogs                  # `nex rootfs`: a shell in the image; mkfs.ext4 -d
  qemu-system-x86 lz4                       # the microvm sandbox: the VMM; Debian's kernel is LZ4
  libgtest-dev libgmock-dev                 # tests
  clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt  # tests build WebAssembly modules (C, WAT)
  openssl                                   # the TLS test makes its certificates with it
  clang-format python3 git                  # scripts/check.sh: formatting, function lengths
  clang-tidy-19                             # scripts/tidy.sh: the named checks of .clang-tidy
  ca-certificates
)
# Node.js runs the interoperability test with the official JavaScript client. Keep a Node.js
# that is already installed (it may not come from Debian); otherwise take Debian's.
command -v node > /dev/null || packages+=(nodejs)
command -v npm > /dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "==> Installing: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

echo "==> Building nex (Release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNEX_WERROR="${NEX_WERROR:-OFF}" > /dev/null
cmake --build build -j"$(nproc)"
echo "==> Built build/bin/nex"
