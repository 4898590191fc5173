# `consul config write service-intentions-specd-draft.hcl`: verifiers open the
# speculation streams; the router reads the drafts' Info.
Kind = "service-intentions"
Name = "specd-draft"
Sources = [
  {
    Name   = "specd-verifier"
    Action = "allow"
  },
  {
    Name   = "specd-router"
    Action = "allow"
  },
]
