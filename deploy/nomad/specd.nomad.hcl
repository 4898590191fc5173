# specd on Nomad with Consul Connect: `nomad job run -var image=REGISTRY/specd:TAG specd.nomad.hcl`
#
# Needs: Nomad clients with Docker, CNI plugins and Consul (Connect enabled), and a host
# volume "specd-models" on the clients that run verifiers and drafts, holding the model
# files (client config: host_volume "specd-models" { path = "/var/lib/specd/models"
# read_only = true }). Apply ../consul/config-entries/ first (protocol grpc, intentions).
#
# Nomad registers the services in Consul from the service blocks below, so specd runs
# WITHOUT --consul. Each group has its own network namespace (bridge mode): verifier and
# draft listen on loopback and are reached only through their Envoy sidecars; the
# router reaches them through its upstreams with static discovery. The router passes
# the draft's address (127.0.0.1:17072) to the verifier, whose own specd-draft upstream
# binds the same port. See ../consul/specd-router.hcl for the trade-off of the mesh.

variable "image" {
  type        = string
  description = "The specd image (built from deploy/Dockerfile)."
  default     = "specd:dev"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "otlp_endpoint" {
  type        = string
  description = "OTLP/gRPC endpoint of an OpenTelemetry Collector."
  default     = "http://otel-collector.service.consul:4317"
}

job "specd" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "5m"
    auto_revert      = true
  }

  group "verifier" {
    count = 1

    network {
      mode = "bridge"
      port "metrics" {
        to = 9090
      }
    }

    volume "models" {
      type      = "host"
      source    = "specd-models"
      read_only = true
    }

    service {
      name = "specd-verifier"
      port = "7071"
      tags = ["verifier"]

      meta {
        model = "specd-target-q8_0"
        quant = "q8_0"
      }

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "specd-draft"
              local_bind_port  = 17072
            }
          }
        }
      }

      # expose: Consul reaches the loopback-only port through a path on the sidecar.
      check {
        name         = "specd-verifier grpc.health.v1"
        type         = "grpc"
        expose       = true
        grpc_service = "specd.speculation.v1.VerifierService"
        grpc_use_tls = false
        interval     = "10s"
        timeout      = "2s"

        check_restart {
          limit = 3
          grace = "2m"
        }
      }
    }

    service {
      name = "specd-verifier-metrics"
      port = "metrics"
      tags = ["metrics"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "verifier" {
      driver       = "docker"
      kill_timeout = "20s"

      config {
        image           = var.image
        readonly_rootfs = true
        args = [
          "verifier",
          "--listen=127.0.0.1:7071",
          "--drafts=127.0.0.1:17072",
          "--metrics-listen=0.0.0.0:9090",
          "-m=specd-target-q8_0",
          "--threads=2",
          "--queue=256",
          "--kv-budget=268435456",
          "--mode=coupled",
          "--log-format=json",
        ]
      }

      volume_mount {
        volume      = "models"
        destination = "/models"
        read_only   = true
      }

      env {
        SPECD_MODELS                = "/models"
        OTEL_SERVICE_NAME           = "specd-verifier"
        OTEL_EXPORTER_OTLP_ENDPOINT = var.otlp_endpoint
        OTEL_EXPORTER_OTLP_PROTOCOL = "grpc"
        OTEL_METRICS_EXPORTER       = "prometheus"
      }

      # cpu in MHz; memory_max needs memory oversubscription enabled in the scheduler.
      resources {
        cpu        = 2000
        memory     = 512
        memory_max = 1024
      }
    }
  }

  group "draft" {
    count = 1

    network {
      mode = "bridge"
      port "metrics" {
        to = 9090
      }
    }

    volume "models" {
      type      = "host"
      source    = "specd-models"
      read_only = true
    }

    service {
      name = "specd-draft"
      port = "7072"
      tags = ["draft"]

      meta {
        model = "specd-draft-q8_0"
        quant = "q8_0"
      }

      connect {
        sidecar_service {}
      }

      check {
        name         = "specd-draft grpc.health.v1"
        type         = "grpc"
        expose       = true
        grpc_service = "specd.speculation.v1.DraftService"
        grpc_use_tls = false
        interval     = "10s"
        timeout      = "2s"

        check_restart {
          limit = 3
          grace = "2m"
        }
      }
    }

    service {
      name = "specd-draft-metrics"
      port = "metrics"
      tags = ["metrics"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "draft" {
      driver       = "docker"
      kill_timeout = "20s"

      config {
        image           = var.image
        readonly_rootfs = true
        args = [
          "draft",
          "--listen=127.0.0.1:7072",
          "--metrics-listen=0.0.0.0:9090",
          "-m=specd-draft-q8_0",
          "--threads=1",
          "--kv-budget=67108864",
          "--depth=2",
          "--log-format=json",
        ]
      }

      volume_mount {
        volume      = "models"
        destination = "/models"
        read_only   = true
      }

      env {
        SPECD_MODELS                = "/models"
        OTEL_SERVICE_NAME           = "specd-draft"
        OTEL_EXPORTER_OTLP_ENDPOINT = var.otlp_endpoint
        OTEL_EXPORTER_OTLP_PROTOCOL = "grpc"
        OTEL_METRICS_EXPORTER       = "prometheus"
      }

      resources {
        cpu        = 2000
        memory     = 256
        memory_max = 512
      }
    }
  }

  group "router" {
    count = 1

    network {
      mode = "bridge"
      # Clients outside the mesh reach the public API on this port of the host.
      port "api" {
        to = 7070
      }
      port "metrics" {
        to = 9090
      }
    }

    service {
      name = "specd-router"
      port = "7070"
      tags = ["router"]

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "specd-verifier"
              local_bind_port  = 17071
            }
            upstreams {
              destination_name = "specd-draft"
              local_bind_port  = 17072
            }
          }
        }
      }

      check {
        name         = "specd-router grpc.health.v1"
        type         = "grpc"
        expose       = true
        grpc_service = "specd.v1.GenerationService"
        grpc_use_tls = false
        interval     = "10s"
        timeout      = "2s"
        # No check_restart here: this is NOT_SERVING while no verifier is usable, and
        # a restart would not bring one back. /healthz below restarts a hung router.
      }
    }

    service {
      name = "specd-router-metrics"
      port = "metrics"
      tags = ["metrics"]

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "router" {
      driver       = "docker"
      kill_timeout = "20s"

      config {
        image           = var.image
        readonly_rootfs = true
        args = [
          "router",
          "--listen=0.0.0.0:7070",
          # Plaintext for clients outside the mesh (the sidecars carry mTLS inside it;
          # TLS flags would also apply to the router's plaintext local upstreams).
          "--insecure-plaintext",
          "--metrics-listen=0.0.0.0:9090",
          "--discovery=static",
          "--verifiers=127.0.0.1:17071",
          "--drafts=127.0.0.1:17072",
          "--log-format=json",
        ]
      }

      env {
        OTEL_SERVICE_NAME           = "specd-router"
        OTEL_EXPORTER_OTLP_ENDPOINT = var.otlp_endpoint
        OTEL_EXPORTER_OTLP_PROTOCOL = "grpc"
        OTEL_METRICS_EXPORTER       = "prometheus"
      }

      resources {
        cpu        = 500
        memory     = 64
        memory_max = 256
      }
    }
  }
}
