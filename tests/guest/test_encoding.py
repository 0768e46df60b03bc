import base64
import gzip

import pytest

from vmcoreos.guest.encoding import DecodeError, decode, encode

DATA = b"#cloud-config\nhostname: lab-01\n"


@pytest.mark.parametrize("encoding", ["gzip+base64", "base64"])
def test_round_trip(encoding):
    assert decode(encode(DATA, encoding), encoding) == DATA


def test_gzip_base64_is_what_the_seed_recipe_made():
    # The seed did `gzip -c | base64 -w0`: the guest must read ours the same way.
    value = encode(DATA, "gzip+base64")
    assert gzip.decompress(base64.b64decode(value)) == DATA
    assert "\n" not in value


def test_encoding_is_deterministic():
    assert encode(DATA) == encode(DATA)


@pytest.mark.parametrize("alias", ["gz+base64", "gzip+b64", "gz+b64"])
def test_decoder_accepts_coreos_cloudinit_aliases(alias):
    assert decode(encode(DATA, "gzip+base64"), alias) == DATA


def test_unknown_encoding_is_refused():
    with pytest.raises(DecodeError, match='Unsupported encoding "zstd"'):
        decode("x", "zstd")
    with pytest.raises(ValueError):
        encode(DATA, "gzip")


def test_gzip_bomb_is_refused_not_expanded():
    # 64 MiB + 1 of zeros compress to ~64 KiB; decoding must stop at the limit.
    import base64
    import gzip

    from vmcoreos.guest.encoding import MAX_DECODED, DecodeError, decode

    bomb = base64.b64encode(gzip.compress(bytes(MAX_DECODED + 1))).decode()
    with pytest.raises(DecodeError, match="more than"):
        decode(bomb, "gzip+base64")


def test_concatenated_gzip_members_decode_like_gzip():
    import base64
    import gzip

    from vmcoreos.guest.encoding import decode

    data = gzip.compress(b"one ") + gzip.compress(b"two")
    assert decode(base64.b64encode(data).decode(), "gz+b64") == b"one two"
