"""Trust: the pinned keys, OpenPGP packets, the sqv/gpgv verifiers, the signature rules, the digest checks that ride
along an image's one read, images verified before, and what binds an image to its release."""
