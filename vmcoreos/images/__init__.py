"""Images: where they come from, how they are checked, and how an OVA is read.

- fetch.py: getting a verified OVA onto local disk, from a channel, a URL or a path (the entry point).
- verification.py: the one way an opened image becomes a VerifiedImage, or a refusal.
- verified.py: VerifiedImage, what every source yields, and a file's identity.
- verified_upload.py: a local OVA verified by the very bytes its upload reads.
- cache.py: the image cache and its records.
- trust/: keys, OpenPGP packets, the sqv/gpgv verifiers, the signature rules, digests, images verified
  before, and what binds an image to its release.
- archive/: inside an OVA: the tar, the OVF descriptor, the .mf manifest.
- sources/: release channels and which release "current" names.
- transfer/: HTTP downloads, the file a download writes, the taps one read feeds.
"""
