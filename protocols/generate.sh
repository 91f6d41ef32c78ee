#!/usr/bin/env bash
# Regenerates the committed protocol code from protocols/eddy/v1/eddy.proto:
#   Sources/EddyProtocol/eddy.pb.swift        (swift-protobuf 1.39's protoc-gen-swift, public visibility)
#   protocols/python/eddy/v1/eddy_pb2.py      (grpcio-tools' protoc; needs protobuf >= its gencode version)
# The Swift plugin takes minutes to build, so CI never runs this; run it after editing the schema:
#   PROTOC_GEN_SWIFT=/path/to/protoc-gen-swift protocols/generate.sh
# (build the plugin with: git clone swift-protobuf at 1.39.0; swift build -c release --product protoc-gen-swift)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PROTOC_GEN_SWIFT:?set PROTOC_GEN_SWIFT to a protoc-gen-swift binary}"
[ -x .venv/bin/python ] || scripts/setup.sh python
.venv/bin/pip install -q grpcio-tools
out=$(mktemp -d)
.venv/bin/python -m grpc_tools.protoc -Iprotocols --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" \
    --swift_opt=Visibility=Public --swift_out="$out" --python_out=protocols/python protocols/eddy/v1/eddy.proto
cp "$out/eddy/v1/eddy.pb.swift" Sources/EddyProtocol/eddy.pb.swift
rm -rf "$out"
