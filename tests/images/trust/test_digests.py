"""The digest checks and the image pass that feeds them (the signature's rules: test_signature.py)."""


def test_the_image_pass_hashes_beside_the_thread_that_reads(mocker):
    # The reading (or receiving) thread only hands chunks on: SHA-512 and the .mf digests run on
    # threads of their own, so on 2 cores they overlap gpgv and the read instead of queueing behind them.
    import threading

    from vmcoreos.images.trust.imagepass import ImagePass
    from vmcoreos.images.archive.manifest import MemberDigestTap
    from vmcoreos.images.trust.digests import Sha512Tap

    seen = {}
    for cls in (Sha512Tap, MemberDigestTap):
        real = cls.update
        mocker.patch.object(cls, "update", autospec=True, side_effect=lambda self, chunk, real=real, cls=cls: (
            seen.setdefault(cls.__name__, set()).add(threading.get_ident()), real(self, chunk)))
    check = ImagePass("x.ova", None, [], members=True)
    check.update(b"\0" * 4096)
    _, sha512 = check.finish()
    import hashlib

    assert sha512 == hashlib.sha512(b"\0" * 4096).hexdigest()
    assert seen["Sha512Tap"] and threading.get_ident() not in seen["Sha512Tap"]
    assert seen["MemberDigestTap"] and threading.get_ident() not in seen["MemberDigestTap"]
    assert not seen["Sha512Tap"] & seen["MemberDigestTap"]
