"""The lease's thumbprint stands in for an ESXi host's certificate only for an unknown issuer or another name.

govmomi's rule (vim25/soap/client.go): an expired certificate is a failure whoever issued it. The strict bed's
NFC host can serve a certificate that expired an hour ago (Vcsim(nfc_cert_expired=True)).
"""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.direct import import_refused
from tests.harness.services import Vcsim
from vmcoreos.vsphere import hostcert

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def expired_host(tmp_path_factory):
    sim = Vcsim(tmp_path_factory.mktemp("expired-nfc"), strict=True, drs=True, nfc_cert_expired=True).start()
    try:
        yield sim
    finally:
        sim.stop()


def test_the_bed_serves_an_expired_host_certificate_and_its_dates_are_read(expired_host):
    der = ssl.PEM_cert_to_DER_cert(expired_host.nfc_cert.read_text())
    not_before, not_after = hostcert.validity(der)
    now = datetime.now(timezone.utc)
    assert not_after < now and now - not_after < timedelta(hours=2) and not_before < not_after
    assert hostcert.outside_validity(der).startswith("certificate expired")
    assert hostcert.outside_validity(der, now=not_after - timedelta(minutes=1)) is None


def test_an_expired_certificate_from_a_trusted_issuer_is_not_excused_by_the_thumbprint(expired_host, signed_ova,
                                                                                      tmp_path):
    bundle = tmp_path / "ca.pem"  # vCenter's and the host's certificates: the issuer is known, the date is not good
    bundle.write_text(expired_host.cert.read_text() + expired_host.nfc_cert.read_text())
    message = import_refused(expired_host, signed_ova["ova"], "expired-trusted", ca_file=bundle)
    assert "TLS certificate is refused (certificate has expired), which no thumbprint excuses" in message


def test_an_expired_certificate_from_an_unknown_issuer_is_refused_after_the_pin_matched(expired_host, signed_ova):
    message = import_refused(expired_host, signed_ova["ova"], "expired-untrusted")
    assert "TLS certificate is refused (certificate expired " in message and "even pinned by the lease's thumbprint" in message
