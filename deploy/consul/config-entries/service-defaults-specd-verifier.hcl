# `consul config write service-defaults-specd-verifier.hcl`: the sidecars speak gRPC (HTTP/2)
# to specd-verifier, so Envoy balances each request (stream) rather than each connection.
Kind     = "service-defaults"
Name     = "specd-verifier"
Protocol = "grpc"
