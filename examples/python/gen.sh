#!/usr/bin/env bash
# gen.sh writes Python stubs for specd's API and grpc.health.v1 into gen/,
# with Debian's packages (apt-get install -y python3-grpcio python3-protobuf
# protobuf-compiler protobuf-compiler-grpc grpc-proto):
#   - protoc 3.21 (protobuf-compiler): specd's protos have proto3 optional
#     fields, which need protoc 3.15 or later; the protoc inside Debian's
#     python3-grpc-tools is 3.5.1 and refuses them;
#   - grpc_python_plugin (protobuf-compiler-grpc) for the service stubs;
#   - grpc-proto for health.proto, copied to grpc_health/v1/ so that its
#     module is grpc_health.v1.health_pb2 (as in the grpcio-health-checking
#     package): generated under grpc/, it would shadow the grpc library.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf gen && mkdir -p gen/src/grpc_health/v1
cp /usr/share/grpc-proto/grpc/health/v1/health.proto gen/src/grpc_health/v1/
plugin="$(command -v grpc_python_plugin)"
protoc -I../../proto -Igen/src --python_out=gen --grpc_out=gen --plugin=protoc-gen-grpc="$plugin" \
	specd/v1/generation.proto grpc_health/v1/health.proto
rm -rf gen/src
