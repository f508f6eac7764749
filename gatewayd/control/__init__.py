"""The daemon's local control socket: status, apply with commit-confirm, confirm."""
