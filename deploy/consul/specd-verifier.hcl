# Consul agent service definition for a specd verifier on a VM, in the Connect service
# mesh: copy it into the agent's config dir (e.g. /etc/consul.d/) and `consul reload`.
# The verifier itself runs from systemd/specd-verifier.service, WITHOUT --consul: the
# agent registers it from this file (self-registration would add a second instance).
#
# It listens on loopback only; other services reach it through its Envoy sidecar
# (`consul connect envoy -sidecar-for specd-verifier`), and it reaches drafts through
# the upstream below.
service {
  name = "specd-verifier"
  id   = "specd-verifier"
  port = 7071
  tags = ["verifier"]

  # Static facts for operators and dashboards; the router's own view of model, quant,
  # tokenizer hash and KV headroom comes from each verifier's Info RPC.
  meta = {
    model = "specd-target-q8_0"
    quant = "q8_0"
  }

  check {
    id                                = "specd-verifier-grpc"
    name                              = "specd-verifier grpc.health.v1"
    grpc                              = "127.0.0.1:7071/specd.speculation.v1.VerifierService"
    grpc_use_tls                      = false
    interval                          = "10s"
    timeout                           = "2s"
    deregister_critical_service_after = "10m"
  }

  connect {
    sidecar_service {
      proxy {
        upstreams = [
          {
            # The router passes each request's draft address (127.0.0.1:17072, from
            # its own specd-draft upstream) to the verifier, which dials it here: the
            # two local_bind_port values must be the same, and the verifier's
            # --drafts must name it (it dials no draft outside that list).
            destination_name = "specd-draft"
            local_bind_port  = 17072
          },
        ]
      }
    }
  }
}
