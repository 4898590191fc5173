# `consul config write service-defaults-specd-router.hcl`: the sidecars speak gRPC (HTTP/2)
# to specd-router, so Envoy balances each request (stream) rather than each connection.
Kind     = "service-defaults"
Name     = "specd-router"
Protocol = "grpc"
