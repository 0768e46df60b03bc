"""Images: where they come from, how they are checked, and how an OVA is read."""
