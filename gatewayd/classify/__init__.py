"""Application classification of the first packets of a flow.

Modules, one job each:
  packet      raw IP packet (as NFQUEUE delivers it) -> PacketInfo
  dns         DNS message parsing and CNAME-chain resolution
  tls         SNI / ALPN / ECH flag from a (possibly segmented) TLS ClientHello
  quic        QUIC Initial decryption (v1, v2, drafts, Google T05x/Q0xx) -> ClientHello
  http        method / Host / path from an HTTP/1.x request
  urls        URL rules (host + path prefix, path keywords) for plain HTTP
  signatures  registry of named payload signatures; sig_p2p and sig_services hold most
  domains     DomainMatcher: domain patterns -> app id
  tables      ClassifierTables: everything the engine looks up, built from the catalog
  engine      Classifier: per-flow state machine the daemon calls per packet
  dns_learning which DNS answers may teach (origin, matching query) and how much one client may
  memories    bounded key -> value memories with expiry (learned addresses, call endpoints)
  flow_budget what one LAN host may hold: tracked flows and buffered bytes, per host and in total
  capture     pcap/pcapng reader for offline replay
  offline     `gatewayd classify --pcap`: the engine over a capture, one report per flow

Nothing here imports scapy or dpkt: the daemon parses bytes by hand (AES for QUIC
comes from `cryptography`).
"""
