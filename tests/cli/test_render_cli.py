"""`vmcoreos render` and `vmcoreos encode` as a user runs them: no vCenter, exact output, secrets kept back."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from tests.harness import guestsim
from vmcoreos.errors import EtcdError
from vmcoreos.guest import nodeconfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SECRET_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
SECRET_HASH = "$6$rounds=4096$saltsalt$Zm9vYmFyYmF6cXV4"


def _cluster(tmp_path, config_name: str, **extra) -> Path:
    data = {"cluster": "lab", "count": 3, "image": {"distro": "flatcar"},
            "node": {"config": config_name, "network": {"mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"],
                                                        "gateway": "10.0.0.1", "dns": ["10.0.0.53"]}}}
    data.update(extra)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _secret_config(tmp_path) -> Path:
    doc = yaml.safe_load((CONFIGS / "flatcar-etcd-member.yaml").read_text())
    doc["write_files"] = [{"path": "/etc/ssl/etcd/key.pem", "permissions": "0600", "content": SECRET_KEY}]
    doc["users"] = [{"name": "ops", "passwd": SECRET_HASH, "groups": ["sudo", "docker"]}]
    (tmp_path / "node.yaml").write_text("#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False))
    return _cluster(tmp_path, "node.yaml")


def test_render_shows_every_node_and_key_and_masks_secrets(cli, tmp_path):
    run = cli(["render", "-c", str(_secret_config(tmp_path)), "--encoded"])
    assert run.returncode == 0, run.stderr
    # One line says where the key will be readable (guestinfo), and never shows it.
    assert run.stderr == f"vmcoreos: WARNING: {tmp_path / 'node.yaml'} {nodeconfig.PRIVATE_KEY_WARNING}\n"
    for i in (1, 2, 3):
        assert f"=== lab-0{i} 10.0.0.2{i}/24 (cloud-config, digest " in run.stdout
        assert f"guestinfo.interface.0.ip.0.address = 10.0.0.2{i}/24" in run.stdout
        assert f"<redacted: {len(SECRET_KEY)} bytes, use --node lab-0{i} to show>" in run.stdout
    assert "guestinfo.coreos.config.data = <redacted: " in run.stdout
    assert "BEGIN PRIVATE KEY" not in run.stdout and SECRET_HASH not in run.stdout
    assert "saltsalt" not in run.stdout


def test_render_node_shows_its_secrets_and_the_value_the_guest_decodes(cli, tmp_path):
    run = cli(["render", "-c", str(_secret_config(tmp_path)), "--node", "lab-02", "--encoded", "--json"])
    assert run.returncode == 0, run.stderr
    (node,) = json.loads(run.stdout)["nodes"]
    assert node["name"] == "lab-02" and node["address"] == "10.0.0.22/24" and node["kind"] == "cloud-config"
    assert SECRET_HASH in node["config"] and "BEGIN PRIVATE KEY" in node["config"]
    keys = node["guestinfo"]
    decoded = guestsim.decode_content(keys["guestinfo.coreos.config.data"], keys["guestinfo.coreos.config.data.encoding"])
    assert decoded.decode() == node["config"]
    assert keys["guestinfo.hostname"] == "lab-02"


def test_render_without_encoded_names_the_value_instead(cli, tmp_path):
    shutil.copy(CONFIGS / "flatcar-etcd-member.yaml", tmp_path / "node.yaml")
    run = cli(["render", "-c", str(_cluster(tmp_path, "node.yaml")), "--count", "1"])
    assert run.returncode == 0, run.stderr
    assert "=== lab-02" not in run.stdout
    assert "guestinfo.coreos.config.data = <the config above, " in run.stdout
    assert "bytes as gzip+base64; --encoded prints it>" in run.stdout


def test_render_unknown_node_and_bad_config_exit_2(cli, tmp_path):
    cluster = _secret_config(tmp_path)
    run = cli(["render", "-c", str(cluster), "--node", "lab-09"])
    assert run.returncode == 2
    assert run.stderr.splitlines()[1:] == ["vmcoreos: error: no node 'lab-09' among the 3 planned: lab-01, lab-02, lab-03"]
    text = (tmp_path / "node.yaml").read_text().replace("write_files:", "write-files:")
    (tmp_path / "node.yaml").write_text(text)
    run = cli(["render", "-c", str(cluster)])
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith(f"vmcoreos: error: node config {tmp_path / 'node.yaml'} has 1 problem; fix it and run again\n  line ")
    assert "unrecognized key 'write-files': write 'write_files'" in run.stderr
    assert "PRIVATE KEY" not in run.stderr and SECRET_HASH not in run.stderr


def test_render_prints_warnings_on_stderr(cli, tmp_path):
    (tmp_path / "node.yaml").write_text((CONFIGS / "flatcar-etcd-member.yaml").read_text() + "hostname: seed\n")
    run = cli(["render", "-c", str(_cluster(tmp_path, "node.yaml")), "--count", "1"])
    assert run.returncode == 0
    line = len((tmp_path / "node.yaml").read_text().splitlines())
    assert run.stderr == (f"vmcoreos: WARNING: {tmp_path / 'node.yaml'} line {line}: hostname is set per node by"
                          " vmcoreos (the host name); the value here is replaced\n")


def test_rendered_ignition_passes_ignition_validate(cli, tmp_path):
    shutil.copy(CONFIGS / "flatcar-ignition.json", tmp_path / "node.json")
    run = cli(["render", "-c", str(_cluster(tmp_path, "node.json")), "--json"])
    assert run.returncode == 0, run.stderr
    nodes = json.loads(run.stdout)["nodes"]
    assert [n["kind"] for n in nodes] == ["ignition"] * 3
    for node in [{"name": "example", "config": (CONFIGS / "flatcar-ignition.json").read_text()}] + nodes:
        path = tmp_path / f"{node['name']}.ign"
        path.write_text(node["config"])
        check = subprocess.run(["ignition-validate", str(path)], capture_output=True, text=True)
        assert (check.returncode, check.stdout + check.stderr) == (0, ""), node["name"]


def test_encode_replaces_the_gzip_base64_recipe(cli, tmp_path):
    source = CONFIGS / "flatcar-etcd-member.yaml"
    run = cli(["encode", str(source)])
    assert run.returncode == 0 and run.stderr == ""
    value = run.stdout.rstrip("\n")
    assert "\n" not in value
    assert guestsim.decode_content(value, "gzip+base64") == source.read_bytes()
    run = cli(["encode", str(source), "--encoding", "base64"])
    assert guestsim.decode_content(run.stdout.strip(), "base64") == source.read_bytes()
    run = cli(["encode", str(source), "--encoding", "gzip"])
    assert run.returncode == 2
    assert run.stderr == "vmcoreos: error: --encoding 'gzip' is not one of gzip+base64, base64\n"


class _NoV2(BaseHTTPRequestHandler):
    def do_PUT(self):
        self.send_response(404)
        self.end_headers()
        self.wfile.write(b"404 page not found\n")

    def log_message(self, *args):
        pass


def test_discovery_token_on_an_etcd_without_v2_says_how_to_fix_it():
    from vmcoreos import discovery

    server = HTTPServer(("127.0.0.1", 0), _NoV2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = discovery.new_url(f"http://user:pw@127.0.0.1:{server.server_port}", token="abc")
        assert url.endswith("/v2/keys/_etcd/registry/abc")
        with pytest.raises(EtcdError, match=r"does not serve the v2 keys API; start it with --enable-v2=true") as err:
            discovery.create(url, 3)
        assert "pw" not in str(err.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
