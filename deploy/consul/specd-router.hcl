# Consul agent service definition for the specd router on a VM, in the Connect service
# mesh (see specd-verifier.hcl). It runs from systemd/specd-router.service with static
# discovery pointed at the two upstreams below: Envoy balances requests (protocol grpc,
# see config-entries/) over the healthy verifiers and drafts.
#
# Trade-off: through the mesh the router sees one verifier and one draft (the local
# upstreams), so its per-endpoint session affinity and breakers act on the upstream,
# not on each instance. For per-instance routing use Consul discovery without the mesh
# (`--discovery=consul`, services registering themselves: deploy/compose does this).
service {
  name = "specd-router"
  id   = "specd-router"
  port = 7070
  tags = ["router"]

  check {
    id                                = "specd-router-grpc"
    name                              = "specd-router grpc.health.v1"
    grpc                              = "127.0.0.1:7070/specd.v1.GenerationService"
    # The router serves mTLS on its public port (systemd/specd-router.service): the
    # agent needs a certificate from the router's CA in its tls stanza (health is the
    # only call it may make with it) and that CA to verify the router for this name.
    grpc_use_tls                      = true
    tls_server_name                   = "specd-router"
    interval                          = "10s"
    timeout                           = "2s"
    deregister_critical_service_after = "10m"
  }

  connect {
    sidecar_service {
      proxy {
        upstreams = [
          {
            destination_name = "specd-verifier"
            local_bind_port  = 17071
          },
          {
            # The router reads each draft's Info (model, tokenizer) and hands the
            # draft's address to the verifier: the verifier's own specd-draft upstream
            # binds the same port.
            destination_name = "specd-draft"
            local_bind_port  = 17072
          },
        ]
      }
    }
  }
}
