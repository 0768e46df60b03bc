"""Everything checkable offline, done once per run before any vSphere call: flags, user config, node configs."""

from __future__ import annotations

from dataclasses import dataclass, replace

from vmcoreos import naming
from vmcoreos.guest import compose, nodeconfig
from vmcoreos.guest.configvalues import NodeConfig, UserConfig
from vmcoreos.reporting import Reporter
from vmcoreos.settings import ClusterSettings, Overrides


@dataclass(frozen=True)
class Prepared:
    settings: ClusterSettings  # the cluster file with the flags applied
    user: UserConfig  # the user's node config, parsed and validated once; re-plans reuse it
    configs: tuple[NodeConfig, ...]  # one per node 1..settings.count
    warnings: tuple[str, ...] = ()  # for the CLI to show, in order
    discovery_size: int | None = None  # a --discovery-etcd token still to mint (claim_discovery)
    file_count: int | None = None  # the cluster file's count, before --count
    count_flag: bool = False  # --count was given


def prepare(settings: ClusterSettings, overrides: Overrides = Overrides()) -> Prepared:
    file_count = settings.count
    settings, warnings = overrides.apply(settings)
    # --count may make node names longer than the cluster file alone did.
    naming.check_node_names(settings.name, settings.count)
    if overrides.discovery_etcd:
        from vmcoreos import discovery

        url = discovery.new_url(overrides.discovery_etcd)
        settings = replace(settings, etcd=replace(settings.etcd, bootstrap="discovery", discovery=url))
    user = nodeconfig.load_user_config(settings)
    warnings += [f"{user.source} {w}" for w in user.warnings]
    configs = compose.node_configs(settings, user, count=settings.count)
    size = settings.count if overrides.discovery_etcd else None
    return Prepared(settings, user, tuple(configs), tuple(warnings), size, file_count, overrides.count is not None)


def claim_discovery(prepared: Prepared, reporter: Reporter) -> None:
    """Mint the --discovery-etcd token the configs name; last, so a refused config never leaves one behind."""
    if prepared.discovery_size is None:
        return
    from vmcoreos import discovery
    from vmcoreos.text import origin

    url = prepared.settings.etcd.discovery
    discovery.create(url, prepared.discovery_size)
    reporter.event(f"minted discovery token for {prepared.discovery_size} members on {origin(url)}")
