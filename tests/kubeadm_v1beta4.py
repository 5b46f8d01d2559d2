"""kubeadm v1beta4 document shapes, as documented (kubeadm configuration reference, kubeadm.k8s.io/v1beta4),
for the fields provisioner's templates can write. kubeadm publishes no JSON schema; a key outside these
shapes is a typo kubeadm would reject ("unknown field") or silently ignore, so tests refuse it."""

from __future__ import annotations

from typing import Any

ARGS = {"name": None, "value": None}  # v1beta4 extraArgs / kubeletExtraArgs: a list of name/value pairs
NODE_REGISTRATION = {"name": None, "criSocket": None, "taints": None, "kubeletExtraArgs": [ARGS],
                     "ignorePreflightErrors": None, "imagePullPolicy": None, "imagePullSerial": None}
API_ENDPOINT = {"advertiseAddress": None, "bindPort": None}
CONTROL_PLANE_COMPONENT = {"extraArgs": [ARGS], "extraVolumes": None, "extraEnvs": None}
SHAPES: dict[str, dict[str, Any]] = {
    "ClusterConfiguration": {
        "apiVersion": None, "kind": None, "etcd": {
            "local": None,
            "external": {"endpoints": None, "caFile": None, "certFile": None, "keyFile": None}},
        "networking": {"serviceSubnet": None, "podSubnet": None, "dnsDomain": None},
        "kubernetesVersion": None, "controlPlaneEndpoint": None,
        "apiServer": {**CONTROL_PLANE_COMPONENT, "certSANs": None},
        "controllerManager": CONTROL_PLANE_COMPONENT, "scheduler": CONTROL_PLANE_COMPONENT,
        "dns": None, "proxy": None, "certificatesDir": None, "imageRepository": None, "featureGates": None,
        "clusterName": None, "encryptionAlgorithm": None, "certificateValidityPeriod": None,
        "caCertificateValidityPeriod": None,
    },
    "InitConfiguration": {
        "apiVersion": None, "kind": None,
        "bootstrapTokens": [{"token": None, "description": None, "ttl": None, "expires": None, "usages": None,
                             "groups": None}],
        "nodeRegistration": NODE_REGISTRATION, "localAPIEndpoint": API_ENDPOINT, "certificateKey": None,
        "skipPhases": None, "patches": None, "timeouts": None,
    },
    "JoinConfiguration": {
        "apiVersion": None, "kind": None, "nodeRegistration": NODE_REGISTRATION, "caCertPath": None,
        "discovery": {"bootstrapToken": {"token": None, "apiServerEndpoint": None, "caCertHashes": None,
                                         "unsafeSkipCAVerification": None},
                      "file": None, "tlsBootstrapToken": None},
        "controlPlane": {"localAPIEndpoint": API_ENDPOINT, "certificateKey": None},
        "skipPhases": None, "patches": None, "timeouts": None,
    },
}


def _walk(value: Any, shape: Any, path: str) -> list[str]:
    if shape is None:
        return []
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in _walk(item, shape[0], f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping, got {type(value).__name__}"]
    out = [f"{path}.{k}: not a kubeadm v1beta4 field" for k in value if k not in shape]
    return out + [p for k, v in value.items() if k in shape for p in _walk(v, shape[k], f"{path}.{k}")]


def shape_problems(doc: dict[str, Any]) -> list[str]:
    if doc.get("apiVersion") != "kubeadm.k8s.io/v1beta4":
        return [] if doc.get("apiVersion", "").startswith(("kubelet.config", "kubeproxy.config")) else [
            f"apiVersion {doc.get('apiVersion')!r} is not kubeadm.k8s.io/v1beta4"]
    kind = doc.get("kind")
    if kind not in SHAPES:
        return [f"kind {kind!r} is not a kubeadm v1beta4 kind provisioner writes"]
    return _walk(doc, SHAPES[kind], kind)
