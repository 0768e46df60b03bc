"""Fedora CoreOS's etcd: the etcd-member.service vmcoreos supplies, running etcd's container with podman.

Fedora CoreOS ships no etcd. Flatcar's etcd-member.service hands its ETCD_*
environment to etcd (etcd-wrapper), but a podman unit does not: `Environment=`
sets podman's own environment, and podman passes a variable into the container
only with `--env K=V`, `--env NAME`, `--env 'PREFIX*'`, `--env-host` or
`--env-file`. So the membership goes into an env file (MEMBER_ENV, written by
Ignition) that the unit hands to the container with `--env-file`; under DHCP a
second one (guest/leased.py) carries the URLs of the address the node leased.

The data directory is a host directory mounted with `:Z`, so SELinux (enforcing
on Fedora CoreOS) relabels it for the container; without it etcd cannot write.
"""

from __future__ import annotations

from vmcoreos.guest.cloudconfig import unit_value

# etcd v3.5.17 on quay.io (the registry etcd's releases publish to), pinned by digest so every node runs the
# same bytes. The digest is the one a public project pins for this tag; a mirror is set with etcd.image.
DEFAULT_IMAGE = (
    "quay.io/coreos/etcd:v3.5.17@sha256:a055da833a7c013b836ed0822e8ec1f99b059658be255ad8d0fcd31b635ae3d6"
)
MEMBER_ENV = "/etc/vmcoreos/etcd-member.env"
DATA_DIR = "/var/lib/etcd"
CONTAINER = "etcd-member"


def env_file(env: dict[str, str]) -> str:
    """podman's --env-file format: one KEY=VALUE a line, the value taken as written (no quoting)."""
    return "".join(f"{k}={unit_value(k, v)}\n" for k, v in env.items())


def member_unit(image: str | None, *, extra_env_files: tuple[str, ...] = (), pre: tuple[str, ...] = ()) -> str:
    """The unit's text; pre: further ExecStartPre= commands (the DHCP address step), run after the mkdir."""
    image = unit_value("etcd.image", image or DEFAULT_IMAGE)
    env_files = "".join(f" \\\n  --env-file {unit_value('env file', f)}" for f in (MEMBER_ENV, *extra_env_files))
    pre_lines = "".join(f"ExecStartPre={unit_value('ExecStartPre', p)}\n" for p in pre)
    return (
        "[Unit]\n"
        "Description=etcd member (vmcoreos: etcd's container under podman)\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        # The first start pulls the image; a registry that never answers must not hold the unit forever.
        "TimeoutStartSec=10min\n"
        "Restart=on-failure\n"
        "RestartSec=10s\n"
        f"ExecStartPre=/usr/bin/mkdir -p {DATA_DIR}\n"
        f"{pre_lines}"
        f"ExecStart=/usr/bin/podman run --name {CONTAINER} --replace --rm --network host \\\n"
        f"  --volume {DATA_DIR}:{DATA_DIR}:Z \\\n"
        f"  --env ETCD_DATA_DIR={DATA_DIR}{env_files} \\\n"
        f"  {image} /usr/local/bin/etcd\n"
        f"ExecStop=/usr/bin/podman stop --ignore --time 30 {CONTAINER}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def passes_membership(unit_text: str) -> bool:
    """Whether a user's podman unit hands vmcoreos's membership to the container (see the module doc)."""
    return _passes(unit_text, MEMBER_ENV)


def passes_address(unit_text: str) -> bool:
    """Whether it hands the container the address file a DHCP node writes (guest/leased.py)."""
    from vmcoreos.guest.leased import ADDRESS_ENV

    return _passes(unit_text, ADDRESS_ENV)


def _passes(unit_text: str, env_file: str) -> bool:
    words = unit_text.replace("\\\n", " ").replace("=", " ").split()
    return env_file in words or "--env-host" in words or any(w.strip("'\"") in ("ETCD_*", "ETCD*") for w in words)
