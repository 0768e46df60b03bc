"""vmcoreos: stand up and maintain CoreOS-family clusters on VMware vSphere."""

__version__ = "0.1.0"
