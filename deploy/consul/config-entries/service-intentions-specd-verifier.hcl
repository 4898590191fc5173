# `consul config write service-intentions-specd-verifier.hcl`: only the router may call
# verifiers (with default-deny ACLs nothing else is allowed).
Kind = "service-intentions"
Name = "specd-verifier"
Sources = [
  {
    Name   = "specd-router"
    Action = "allow"
  },
]
