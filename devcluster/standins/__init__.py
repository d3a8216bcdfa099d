"""Stand-ins: programs the pod runner starts, in a pod's own network namespace, for images whose real
program cannot be built here (see "Stand-ins" in devcluster/README.md)."""
