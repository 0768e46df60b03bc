"""What a node gets through guestinfo: its config, network keys and hostname."""
