"""Application classification of the first packets of a flow.

Modules, one job each:
  packet      raw IP packet (as NFQUEUE delivers it) -> PacketInfo
  dns         DNS message parsing and CNAME-chain resolution
  tls         SNI / ALPN from a (possibly segmented) TLS ClientHello
  http        method / Host / path from an HTTP/1.x request
  signatures  named payload signatures (bittorrent, ssh, ...)
  domains     DomainMatcher: domain patterns -> app id
  tables      ClassifierTables: everything the engine looks up, built from the catalog
  engine      Classifier: per-flow state machine the daemon calls per packet

Nothing here imports scapy or dpkt: the daemon parses bytes by hand.
"""
