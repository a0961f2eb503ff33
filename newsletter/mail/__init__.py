"""Mail on the wire: header encoding, our Message-IDs, and the bytes of each personal message."""
