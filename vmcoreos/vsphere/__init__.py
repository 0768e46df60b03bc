"""Everything that talks to vSphere: session, inventory, import, VMs, waits."""
