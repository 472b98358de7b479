"""The AnalysisJob operator: a Kubernetes resource per analysis job, submitted to and mirrored from
the gateway's job API (``docs/operator.md``). ``crd.yaml``, ``rbac.yaml`` and ``deployment.yaml``
beside this file are the resource definition, the operator's access and its Deployment."""
