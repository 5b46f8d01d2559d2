"""provisioner: one reviewed site model -> every config a bare-metal L3 Kubernetes site needs."""
