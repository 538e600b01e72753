"""The checks of tests/deploy/validate.py, by subject.

- common.py: the repository root, the facts every check shares, Report
- render.py: the kustomizations, rendered with a real kustomize or the
  small built-in renderer
- code.py: facts taken from the code (settings, subcommands, AWS calls)
- kubernetes.py: the rendered objects (schemas, what an operator relies on,
  the production pins) and deploy/README.md's Secrets
- dockerfile.py: deploy/Dockerfile, with hadolint
- image.py: deploy/Containerfile.scratch against deploy/Dockerfile (also
  run by tests/deploy/image.sh against the built image)
- collector.py: the OpenTelemetry Collector configuration
- aws.py: the IAM policy documents against the code
"""
