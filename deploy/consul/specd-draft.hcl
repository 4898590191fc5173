# Consul agent service definition for a specd draft on a VM, in the Connect service
# mesh (see specd-verifier.hcl). The draft calls nobody, so its sidecar has no
# upstreams. It runs from systemd/specd-draft.service, without --consul.
service {
  name = "specd-draft"
  id   = "specd-draft"
  port = 7072
  tags = ["draft"]

  meta = {
    model = "specd-draft-q8_0"
    quant = "q8_0"
  }

  check {
    id                                = "specd-draft-grpc"
    name                              = "specd-draft grpc.health.v1"
    grpc                              = "127.0.0.1:7072/specd.speculation.v1.DraftService"
    grpc_use_tls                      = false
    interval                          = "10s"
    timeout                           = "2s"
    deregister_critical_service_after = "10m"
  }

  connect {
    sidecar_service {}
  }
}
