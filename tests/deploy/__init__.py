"""The deployment files under compose/, checked without a Docker engine or a cluster.

No Docker engine (nor Kubernetes) runs on the build machines, so nothing here
builds an image or starts a container.  Instead:

- every compose service's environment (image ENV < ``env_file`` < ``environment``,
  the env file's variables taken from ``compose/.env.example``) and every
  StatefulSet pod's environment (downward API and ``$(VAR)`` expansion
  resolved, then the manifest's own entrypoint script run by ``/bin/sh``) is
  handed to the real ``crdtkv serve --check-config``, and the resolved
  configuration must be the cluster the files mean: each replica's peers are
  exactly the others, by the names they are reachable under;
- the Dockerfile, .dockerignore, volumes, ports, health checks and probes are
  checked statically, and the health check commands are run against a real
  ``crdtkv serve`` process;
- the negative tests break the files in memory (a replica listing itself as a
  peer, a missing peer, a port on every interface, ...) and expect the checks
  to fail, so the checks can fail.

``support`` holds what the parts share (running ``--check-config``, the
Dockerfile's parser); ``test_dockerfile``, ``test_compose``, ``test_k8s`` and
``test_healthchecks`` check one file or concern each.
"""
