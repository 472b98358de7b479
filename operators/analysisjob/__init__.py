"""The AnalysisJob operator: a Kubernetes resource per analysis job, submitted to and mirrored from
the gateway's job API (``docs/operator.md``). ``crd.yaml`` beside this file is the resource
definition; the operator's access and Deployment are in the Helm chart (``charts/aima``), which
installs a copy of the CRD from its ``crds/`` folder (a test keeps the two equal)."""
