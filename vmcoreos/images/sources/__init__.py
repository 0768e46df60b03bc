"""Where images come from: release channels and which release a channel's "current" names."""
