"""What a run loads: every module costs start-up, and a no-op re-run on a healthy cluster must stay under 1 s."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A deploy's own work up to the vCenter connection: the cluster file and the node config read and checked.
CHECK_CONFIG = """
import json, sys
from vmcoreos.guest import nodeconfig
from vmcoreos.clusterfile import parse_cluster
data = {"cluster": "lab", "count": 3,
        "node": {"config": sys.argv[1], "network": {"mode": "static", "addresses": ["10.0.0.21-10.0.0.24/24"]}}}
nodeconfig.load_user_config(parse_cluster(data, base_dir=sys.argv[2]))
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_config_check(config: Path) -> set[str]:
    out = subprocess.run([sys.executable, "-c", CHECK_CONFIG, config.name, str(config.parent)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return set(json.loads(out))


def test_checking_a_node_config_does_not_load_the_converter():
    loaded = loaded_after_config_check(ROOT / "configs" / "flatcar-etcd-member.yaml")
    # ruamel.yaml is `vmcoreos convert`'s (round-trip YAML); a deploy only names that command in a refusal.
    assert not {m for m in loaded if m.startswith("ruamel")}
    assert "vmcoreos.guest.convert" not in loaded


def test_the_cli_loads_rich_progress_and_tables_only_to_show_one():
    code = "import json, sys\nimport vmcoreos.cli.app\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    loaded = set(json.loads(out))
    assert "rich.progress" not in loaded and "rich.table" not in loaded


# `render` as the CLI runs it, in process: what it loaded on the way.
RENDER = """
import json, sys
from typer.testing import CliRunner
from vmcoreos.cli.app import app
result = CliRunner().invoke(app, ["render", "-c", sys.argv[1]])
assert result.exit_code == 0, result.output
print(json.dumps(sorted(sys.modules)))
"""


def test_render_never_loads_the_vsphere_side(tmp_path):
    # An offline command: the checks before any vSphere call live in vmcoreos/prepare.py, outside
    # vmcoreos.cluster, so render pays for no pyVmomi, requests or etcd client (about a third of its start-up).
    (tmp_path / "cluster.yaml").write_text("cluster: lab\ncount: 3\n")
    out = subprocess.run([sys.executable, "-c", RENDER, str(tmp_path / "cluster.yaml")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    loaded = set(json.loads(out))
    assert {m for m in loaded if m.split(".")[0] in ("pyVmomi", "requests", "tenacity")} == set()
    assert {m for m in loaded if m.startswith(("vmcoreos.cluster.", "vmcoreos.vsphere", "vmcoreos.etcd"))} == set()
    assert "vmcoreos.cluster" not in loaded
