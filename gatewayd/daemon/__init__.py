"""The running daemon: a reactor loop around the NFQUEUE socket, reloads and metrics."""
