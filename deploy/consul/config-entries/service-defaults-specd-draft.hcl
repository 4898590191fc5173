# `consul config write service-defaults-specd-draft.hcl`: the sidecars speak gRPC (HTTP/2)
# to specd-draft, so Envoy balances each request (stream) rather than each connection.
Kind     = "service-defaults"
Name     = "specd-draft"
Protocol = "grpc"
