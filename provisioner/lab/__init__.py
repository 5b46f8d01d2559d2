"""The network-namespace lab: a site brought up on one machine with real FRR, BIRD, sshd and etcd.

topology.py derives namespaces, links and addresses from the Plan (pure); netns.py wraps iproute2;
state.py holds paths and state.json; hosts.py is the per-host API (anchor, host_exec, sshd, fake hardware);
daemons.py starts and stops FRR, BIRD and etcd; up.py, verify.py, fail.py and teardown.py implement the
``provisioner lab`` commands. See docs/lab.md.
"""
