"""apply: push a rendered tree to the hosts with Ansible, safely.

- ``rollout``   which hosts go in which batch, in which order, switch waves (pure); the Sequencer that follows
                one rollout run from its events and decides whether the next batch may start
- ``engine``    one apply, start to end: run directory, pre-flight, confirmation, the rollout run, the report
- ``preflight`` paramiko checks of every targeted host before anything changes
- ``runner``    run directories and one ansible-runner run per rollout (generated playbook: a guard play and
                the batch's play per batch; secrets kept out of artifacts)
- ``progress``  live progress from ansible-runner events and the summary table
- ``rollback``  re-apply a known-good tree (a previous run, or the site at a git ref)

ansible_runner, ansible and paramiko are imported inside functions only, so ``validate``, ``render`` and
``plan`` never load them.
"""
