"""Inside an OVA: the tar itself, its OVF descriptor and its .mf manifest."""
