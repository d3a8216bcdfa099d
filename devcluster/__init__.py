"""A local Kubernetes control plane for tests: real etcd, kube-apiserver, kube-controller-manager and
kube-scheduler on loopback, kwok for fake nodes and pod status, and a simulator for the platform
controllers that cannot run here. See README.md in this folder."""
